"""The GLiNER student: build, train, save, load and predict (finetune_gliner, scout, evaluate, scripts).

Base model from params: `local-minilm` builds GLiNER on the offline MiniLM encoder; a hub id or
directory of a GLiNER checkpoint (e.g. EmergentMethods/gliner_medium_news-v2.1) fine-tunes that.
A saved model reloads with `load(directory)` (or GLiNER.from_pretrained). `export(model_dir, export_dir)` writes
the CPU-serving form (an int8 ONNX graph for ONNX Runtime, with config and tokenizer); the same `load(export_dir)`
serves it. The interface every student has is in stages/students/registry.py.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from stages.core.spans import char_to_token_spans, word_tokens
from stages.students.config import GlinerTraining
from stages.students.encoder import LOCAL_MINILM_HUB_ID, hidden_size, local_encoder_dir, rewrite_json, unreachable
from stages.students.runtime import EXPORT_FILE, is_exported, onnx_session, quantize_int8, quantize_onnx
from stages.students.settings import read_settings
from stages.students.training import Predictor, Records, TrainingResult, fit

NAME = "gliner"  # its registry name (registry.py): model folders name their student by it
# The threshold training validates each epoch at, and the one the saved folder's predict settings keep: a fixed
# constant, so the decode threshold (params predict.gliner.threshold, applied where the student predicts: export,
# evaluate, tag) can change without retraining. 0.5 is the value the students were always selected at.
TRAINING_THRESHOLD = 0.5


def to_example(record: Mapping[str, Any], label: str) -> dict:
    """GLiNER's training format: word tokens, inclusive token spans, and the label always on offer
    (so headlines without a company teach the model to say no)."""
    tokens = word_tokens(record["text"])
    return {
        "tokenized_text": [record["text"][s:e] for s, e in tokens],
        "ner": [[first, last, label] for first, last in char_to_token_spans(tokens, record["spans"])],
        "ner_labels": [label],
    }


def build_model(base: str, max_width: int, revision: str | None = None):
    from gliner import GLiNER, GLiNERConfig

    encoder = local_encoder_dir(base)
    if encoder is None:
        try:
            return GLiNER.from_pretrained(base, revision=revision)
        except OSError as error:
            raise unreachable(base, "finetune_gliner", error) from error
    config = GLiNERConfig(
        model_name=str(encoder),
        span_mode="markerV0",
        max_width=max_width,
        hidden_size=hidden_size(encoder),
        max_len=128,
    )
    return GLiNER.from_config(config, backbone_from_pretrained=True, load_tokenizer=True)


def save(model, directory: Path) -> None:
    """save_pretrained, with the base named by hub id instead of this machine's encoder path (GLiNER does not
    need it to reload: the encoder config and tokenizer are saved alongside), so outputs match across checkouts."""
    model.save_pretrained(str(directory))
    if Path(model.config.model_name).is_dir():
        rewrite_json(directory / "gliner_config.json", model.config.model_name, LOCAL_MINILM_HUB_ID)


def predict(model, texts: list[str], label: str, threshold: float, batch_size: int = 32) -> list[list[dict]]:
    if not texts:
        return []
    batches = model.inference(texts, [label], threshold=threshold, batch_size=batch_size)
    return [
        [{"start": e["start"], "end": e["end"], "text": e["text"], "score": float(e["score"])} for e in entities]
        for entities in batches
    ]


def load(model_dir: Path, int8: bool = False, decode: Mapping[str, Any] | None = None) -> Predictor:
    """predict(texts, batch_size) of a saved or exported student (int8: torch dynamic quantization of a saved
    model; an exported one is already int8 and runs on ONNX Runtime). decode ({"threshold": ...}) overrides the
    folder's predict settings."""
    from gliner import GLiNER

    settings = read_settings(model_dir) | dict(decode or {})
    if is_exported(model_dir):
        model = GLiNER.from_pretrained(
            str(model_dir),
            load_tokenizer=True,
            runtime="onnxruntime",
            runtime_options={"session": onnx_session(model_dir / EXPORT_FILE)},
        )
    else:
        model = GLiNER.from_pretrained(str(model_dir), load_tokenizer=True)
        model.eval()
        if int8:
            quantize_int8(model)
    return lambda texts, batch_size=32: predict(
        model, texts, settings["entity_label"], settings["threshold"], batch_size
    )


def export(model_dir: Path, into: Path) -> None:
    """The CPU-serving form of a saved student into a new directory: GLiNER's own ONNX export, int8-quantized for
    ONNX Runtime, with its config and tokenizer; with the predict settings the export stage adds, `load(into)`
    serves it (no torch weights needed)."""
    from gliner import GLiNER

    model = GLiNER.from_pretrained(str(model_dir), load_tokenizer=True)
    model.eval()
    with tempfile.TemporaryDirectory() as scratch:
        graph = Path(model.export_to_onnx(scratch, quantize=False)["onnx_path"])
        shutil.copytree(scratch, into, ignore=shutil.ignore_patterns("*.onnx"))
        quantize_onnx(graph, into / EXPORT_FILE)


def zero_shot(training: GlinerTraining, decode: Mapping[str, Any] | None = None) -> Predictor:
    """predict(texts, batch_size) of the recipe's base checkpoint as it is, asked for our entity label (at the
    decode threshold, else the training one)."""
    model = build_model(training.base_model, training.max_width, training.revision)
    model.eval()
    threshold = dict(decode or {}).get("threshold", TRAINING_THRESHOLD)
    return lambda texts, batch_size=32: predict(model, texts, training.entity_label, threshold, batch_size)


def train(training: GlinerTraining, train_records: Records, valid_records: Records, out_dir: Path) -> TrainingResult:
    import torch
    from gliner.training import Trainer

    torch.manual_seed(training.seed)
    label, threshold = training.entity_label, TRAINING_THRESHOLD
    model = build_model(training.base_model, training.max_width, training.revision)

    def make_trainer(args: dict, callbacks: list) -> Trainer:
        training_args = model.create_training_args(
            **args,
            others_lr=training.others_learning_rate,
            others_weight_decay=training.others_weight_decay,
            focal_loss_alpha=training.focal_loss_alpha,
            focal_loss_gamma=training.focal_loss_gamma,
            lr_scheduler_type="linear",
            max_steps=-1,
        )
        collator = model.data_collator_class(model.config, data_processor=model.data_processor, prepare_labels=True)
        return Trainer(
            model=model,
            args=training_args,
            train_dataset=[to_example(r, label) for r in train_records],
            data_collator=collator,
            tokenizer=model.data_processor.transformer_tokenizer,
            callbacks=callbacks,
        )

    return fit(
        lambda directory: save(model, directory),
        make_trainer,
        lambda texts: predict(model, texts, label, threshold),
        {"student": NAME, "entity_label": label, "threshold": threshold},
        valid_records,
        out_dir,
        training,
    )
