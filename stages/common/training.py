"""What both students share: training records, best-checkpoint-by-valid-F1 callback, outputs."""
from __future__ import annotations

import argparse
import csv
import json
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import polars as pl
from transformers import TrainerCallback

from stages.common.io import log, read_table, setup_logging, write_json
from stages.common.metrics import entity_scores
from stages.common.model_card import CardData, label_examples, render
from stages.common.params import load_params
from stages.common.schema import seeded_rank

SETTINGS_FILE = "headline_ner.json"  # how to predict with a saved student (label, threshold, ...)

Predictor = Callable[[list[str]], list[list[dict]]]


LABEL_SOURCES = ("reviewed", "teacher")


def labelled_records(frame: pl.DataFrame, labels: str = "reviewed") -> list[dict]:
    """Records with a usable label as {id, text, spans, label_source}, sorted for a fixed order.

    labels="reviewed": the reviewed label (human where there is one, else the teacher's); labels="teacher":
    the teacher's label of every validly answered headline (what the weak-vs-human comparison trains on).
    """
    if labels not in LABEL_SOURCES:
        raise SystemExit(f"params.yaml: train_labels must be one of {LABEL_SOURCES}, got {labels!r}")
    usable = frame.filter((pl.col("label_source") != "none") if labels == "reviewed" else pl.col("valid")).sort("id")
    column = "spans" if labels == "reviewed" else "llm_spans"
    return [{"id": r["id"], "text": r["text"], "spans": r[column] or [], "label_source": r["label_source"]}
            for r in usable.iter_rows(named=True)]


def human_or_all(records: list[dict]) -> list[dict]:
    """The human-labelled records when there are any, else all: the teacher's labels must not pick the best
    epoch (or grade a model) when humans have labelled something."""
    human = [r for r in records if r["label_source"] == "human"]
    return human or records


UNREVIEWED = ("keep", "drop")


def unreviewed_rule(records: list[dict], rule: str) -> list[dict]:
    """How headlines no human labelled enter training: with the teacher's labels (keep) or not at all (drop).
    Weak labels can cost more than they add when the teacher is weak, so this is a choice, not a default.
    (A loss weight below 1 is not offered: neither library's trainer takes per-example weights cleanly.)"""
    if rule not in UNREVIEWED:
        raise SystemExit(f"params.yaml: unreviewed must be one of {UNREVIEWED}, got {rule!r}")
    return records if rule == "keep" else [r for r in records if r["label_source"] == "human"]


def seeded_subset(records: list[dict], limit: int | None, seed: int) -> list[dict]:
    """The first `limit` records in a seeded order (nested: a smaller limit is a subset of a larger one)."""
    if not limit or limit >= len(records):
        return records
    ranked = sorted(records, key=lambda r: seeded_rank(seed, r["id"]))
    return sorted(ranked[:limit], key=lambda r: r["id"])


class BestByValidF1(TrainerCallback):
    """After every epoch: entity F1 on the validation records; the best model so far is saved.

    Stops early after `patience` epochs without improvement (0 disables early stopping).
    """

    def __init__(self, predict: Predictor, save: Callable[[Path], None], valid: list[dict], staging: Path,
                 patience: int = 0):
        self.predict, self.save, self.valid, self.staging, self.patience = predict, save, valid, staging, patience
        self.history: list[dict] = []
        self.best_f1, self.best_epoch = -1.0, 0

    def on_epoch_end(self, args, state, control, **kwargs):
        epoch = round(state.epoch or len(self.history) + 1)
        scores = entity_scores([r["spans"] for r in self.valid], self.predict([r["text"] for r in self.valid]))
        self.history.append({"epoch": epoch, "train_loss": None, "valid_precision": scores["precision"],
                             "valid_recall": scores["recall"], "valid_f1": scores["f1"]})
        log.info("epoch %d: valid P %.3f R %.3f F1 %.3f", epoch, scores["precision"], scores["recall"],
                 scores["f1"])
        if scores["f1"] > self.best_f1:
            self.best_f1, self.best_epoch = scores["f1"], epoch
            if self.staging.exists():
                shutil.rmtree(self.staging)
            self.save(self.staging)
        elif self.patience and epoch - self.best_epoch >= self.patience:
            log.info("early stop: no valid F1 gain for %d epochs", self.patience)
            control.should_training_stop = True
        return control

    def on_log(self, args, state, control, logs=None, **kwargs):
        # With logging_strategy="epoch" the epoch's mean loss is logged just after on_epoch_end.
        if logs and "loss" in logs and self.history and self.history[-1]["train_loss"] is None:
            self.history[-1]["train_loss"] = round(float(logs["loss"]), 4)


def fit(save_model: Callable[[Path], None], make_trainer: Callable[[dict, list], object], predict: Predictor,
        settings: dict, valid: list[dict], out_dir: Path, params: dict) -> dict:
    """Train with per-epoch validation; the best epoch's model (plus its predict settings) ends in out_dir.

    make_trainer(args, callbacks) builds the library's trainer from the shared TrainingArguments kwargs;
    save_model(directory) writes a self-contained, reloadable model.
    """
    staging = out_dir.with_name(out_dir.name + ".partial")

    def save(directory: Path) -> None:
        save_model(directory)
        write_settings(directory, settings)

    best = BestByValidF1(predict, save, valid, staging, params["patience"])
    with tempfile.TemporaryDirectory() as scratch:
        args = {"output_dir": scratch, "learning_rate": params["learning_rate"], "weight_decay": params["weight_decay"],
                "warmup_ratio": params["warmup_ratio"], "per_device_train_batch_size": params["batch_size"],
                "num_train_epochs": params["epochs"], "seed": params["seed"], "data_seed": params["seed"],
                "save_strategy": "no", "eval_strategy": "no", "logging_strategy": "epoch",
                "dataloader_num_workers": 0, "report_to": "none", **device_args(params["device"])}
        run = make_trainer(args, [best]).train()
    publish(staging, out_dir)
    return {"history": best.history, "best_epoch": best.best_epoch, "best_valid_f1": best.best_f1,
            "train_steps_per_s": run.metrics.get("train_steps_per_second")}


def device_args(choice: str) -> dict:
    """TrainingArguments for `device: auto | cpu | cuda`: auto takes the GPU when torch sees one; on CUDA, bf16
    mixed precision where the card has it (else fp16). A GPU run gives other, equally valid checkpoints."""
    import torch

    cuda = torch.cuda.is_available()
    if choice == "cuda" and not cuda:
        raise SystemExit("params.yaml: device: 'cuda' is not allowed here: torch sees no GPU (install a CUDA build of "
                         "torch, or set device: auto / cpu)")
    if choice == "cpu" or not cuda:
        return {"use_cpu": True}
    bf16 = torch.cuda.is_bf16_supported()
    return {"use_cpu": False, "bf16": bf16, "fp16": not bf16}


def publish(staging: Path, out_dir: Path) -> None:
    """Replace the previous model only once the new best checkpoint is complete."""
    if not staging.exists():
        raise SystemExit(f"no checkpoint was saved in {staging}: did training run at least one epoch?")
    if out_dir.exists():
        shutil.rmtree(out_dir)
    staging.rename(out_dir)


def quantize_int8(model):
    """Dynamic int8 quantization of the Linear layers, for CPU serving (about 1.8x faster here; a few
    predictions change, so evaluate it before you ship it)."""
    import torch

    return torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8, inplace=True)


EXPORT_FILE = "model.onnx"  # inside an exported student: the int8 ONNX graph ONNX Runtime serves
EXPORT_FORMAT = "onnx-int8"


def quantize_onnx(source: Path, target: Path) -> None:
    """Dynamic int8 quantization of an ONNX graph's MatMul weights for ONNX Runtime on CPU: per output channel
    (per tensor cost a tiny GLiNER 4.6 F1 points, per channel 3.0), activations quantized per batch at run time.
    Deterministic: the same graph gives a byte-identical file."""
    import logging

    from onnxruntime.quantization import QuantType, quantize_dynamic

    root, level = logging.getLogger(), logging.getLogger().level
    root.setLevel(logging.ERROR)  # quantize_dynamic warns on the root logger to "run pre-processing" first
    try:
        quantize_dynamic(model_input=str(source), model_output=str(target), weight_type=QuantType.QInt8,
                         per_channel=True)
    finally:
        root.setLevel(level)


def onnx_session(path: Path, threads: int = 0):
    """An ONNX Runtime CPU session with every graph optimisation on (threads=0: one per physical core)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def is_exported(model_dir: Path) -> bool:
    return (model_dir / EXPORT_FILE).exists()


def write_settings(model_dir: Path, settings: dict) -> None:
    (model_dir / SETTINGS_FILE).write_text(json.dumps(settings, indent=2, sort_keys=True) + "\n")


def read_settings(model_dir: Path) -> dict:
    path = model_dir / SETTINGS_FILE
    if not path.exists():
        raise SystemExit(f"{path}: missing; {model_dir} was not written by a finetune stage")
    return json.loads(path.read_text())


def write_history(path: Path, history: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["epoch", "train_loss", "valid_precision", "valid_recall",
                                               "valid_f1"], lineterminator="\n")
        writer.writeheader()
        writer.writerows(history)


def with_recipe(params: dict) -> dict:
    """A validated finetune section with its chosen recipe's keys merged in (the recipe wins)."""
    return {k: v for k, v in params.items() if k != "recipes"} | params["recipes"][params["recipe"]]


def finetune_main(section: str, title: str, student: ModuleType, argv: list[str] | None) -> None:
    """The thin main() of both finetune stages: read params and splits, train, write model card and metrics,
    then the int8 ONNX form for CPU serving beside the model. `student` is the shared module with the student's
    train() and export() (stages.common.gliner_student, ...)."""
    parser = argparse.ArgumentParser(description=f"{section}: fine-tune on the reviewed train split")
    for name in ("train", "valid", "out", "export", "metrics", "history"):
        parser.add_argument(f"--{name}", type=Path, required=True)
    args = parser.parse_args(argv)
    setup_logging()
    params = with_recipe(load_params(section))
    columns = ["label_source", "spans", "llm_spans", "valid"]
    records = {"train": unreviewed_rule(labelled_records(read_table(args.train, columns)), params["unreviewed"]),
               "valid": human_or_all(labelled_records(read_table(args.valid, columns)))}
    if not records["train"] or not records["valid"]:
        raise SystemExit(f"{section}: need labelled train and valid records, have {len(records['train'])} and "
                         f"{len(records['valid'])}")
    sizes = {name: len(rs) for name, rs in records.items()}
    sizes |= {f"{name}_human": sum(r["label_source"] == "human" for r in rs) for name, rs in records.items()}
    log.info("%s: %d train records (%d human-labelled), %d valid records (%d human-labelled), base %s", section,
             sizes["train"], sizes["train_human"], sizes["valid"], sizes["valid_human"], params["base_model"])
    result = student.train(params, records["train"], records["valid"], args.out)
    best_row = next(h for h in result["history"] if h["epoch"] == result["best_epoch"])
    card = CardData(title=title, module=student.__name__.rsplit(".", 1)[-1], directory=str(args.out),
                    base_model=params["base_model"], revision=params["revision"], entity_label=params["entity_label"],
                    epochs=params["epochs"], sizes=sizes, best=best_row, params=params,
                    examples=label_examples(records["train"]))
    (args.out / "README.md").write_text(render(card))
    write_history(args.history, result["history"])
    write_json(args.metrics, {"train_records": sizes["train"], "valid_records": sizes["valid"],
                              "train_human_labelled": sizes["train_human"], "valid_human_labelled": sizes["valid_human"],
                              "best_epoch": result["best_epoch"], "best_valid_f1": result["best_valid_f1"]})
    log.info("%s: best epoch %d, valid F1 %.4f -> %s", section, result["best_epoch"], result["best_valid_f1"], args.out)
    started = time.perf_counter()
    student.export(args.out, args.export)
    log.info("%s: exported %s -> %s (%s) in %.1f s", section, args.out, args.export, EXPORT_FORMAT,
             time.perf_counter() - started)

