"""The CPU-serving forms of a student: torch dynamic int8, and the int8 ONNX graph ONNX Runtime serves (written by
the export stage into the folder serving/package.py completes)."""

from __future__ import annotations

from pathlib import Path

EXPORT_FILE = "model.onnx"  # inside an exported student: the int8 ONNX graph
EXPORT_FORMAT = "onnx-int8"


def quantize_int8(model):
    """Dynamic int8 quantization of the Linear layers, for CPU serving (about 1.8x faster here; a few
    predictions change, so evaluate it before you ship it)."""
    import torch

    return torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8, inplace=True)


def quantize_onnx(source: Path, target: Path) -> None:
    """Dynamic int8 quantization of an ONNX graph's MatMul weights for ONNX Runtime on CPU: per output channel
    (per tensor cost a tiny GLiNER 4.6 F1 points, per channel 3.0), activations quantized per batch at run time.
    Deterministic: the same graph gives a byte-identical file."""
    import logging

    from onnxruntime.quantization import QuantType, quantize_dynamic

    root, level = logging.getLogger(), logging.getLogger().level
    root.setLevel(logging.ERROR)  # quantize_dynamic warns on the root logger to "run pre-processing" first
    try:
        quantize_dynamic(
            model_input=str(source), model_output=str(target), weight_type=QuantType.QInt8, per_channel=True
        )
    finally:
        root.setLevel(level)


def is_exported(model_dir: Path) -> bool:
    return (model_dir / EXPORT_FILE).exists()


def onnx_session(path: Path, threads: int = 0):
    """An ONNX Runtime CPU session with every graph optimisation on (threads=0: one per physical core)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
