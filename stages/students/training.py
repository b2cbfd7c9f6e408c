"""How both students train: per-epoch validation F1 keeps the best checkpoint, on the device params choose."""

from __future__ import annotations

import math
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from transformers import TrainerCallback
from transformers.trainer_callback import ProgressCallback

from stages.core.errors import ParamsError, PipelineError
from stages.core.io import log, replacing_dir
from stages.core.metrics import entity_scores
from stages.students.config import GlinerTraining, SpanMarkerTraining
from stages.students.settings import write_settings

Predictor = Callable[..., list[list[dict]]]  # predict(texts, batch_size=32) -> spans per text
Records = Sequence[Mapping[str, Any]]  # core.schema.Record dicts (scout's carry its `valid` flag too)
HISTORY_FIELDS = ["epoch", "train_loss", "valid_precision", "valid_recall", "valid_f1"]  # one row per epoch


class LibraryTrainer(Protocol):
    """What fit() needs of the trainer a student builds (a transformers.Trainer subclass)."""

    def train(self) -> Any: ...

    def add_callback(self, callback: Any) -> None: ...

    def remove_callback(self, callback: Any) -> None: ...


class NamedProgress(ProgressCallback):
    """transformers' training progress bar (stderr), named by student and epoch: "gliner epoch 2/6" (the library's
    bar has no label, so a DVC log of several trainings could not tell them apart)."""

    def __init__(self, name: str):
        super().__init__()
        self.name = name

    def on_epoch_begin(self, args, state, control, **kwargs):
        epochs = math.ceil(args.num_train_epochs)
        epoch = min(epochs, math.floor(state.epoch or 0) + 1)
        if self.training_bar is not None:
            self.training_bar.set_description(f"{self.name} epoch {epoch}/{epochs}")
        log.info("%s: epoch %d/%d, %d steps so far of %d", self.name, epoch, epochs, state.global_step, state.max_steps)


def student_label(training: GlinerTraining | SpanMarkerTraining) -> str:
    return "gliner" if isinstance(training, GlinerTraining) else "spanmarker"


@dataclass(frozen=True)
class TrainingResult:
    """What a student's train() returns: one HISTORY_FIELDS row per epoch, and the epoch kept in out_dir."""

    history: list[dict]
    best_epoch: int
    best_valid_f1: float
    train_steps_per_s: float | None

    @property
    def best_row(self) -> dict:
        return next(row for row in self.history if row["epoch"] == self.best_epoch)


class BestByValidF1(TrainerCallback):
    """After every epoch: entity F1 on the validation records; the best model so far is saved.

    Stops early after `patience` epochs without improvement (0 disables early stopping).
    """

    def __init__(
        self, predict: Predictor, save: Callable[[Path], None], valid: Records, staging: Path, patience: int = 0
    ):
        self.predict, self.save, self.valid, self.staging, self.patience = predict, save, valid, staging, patience
        self.history: list[dict] = []
        self.best_f1, self.best_epoch = -1.0, 0

    def on_epoch_end(self, args, state, control, **kwargs):
        epoch = round(state.epoch or len(self.history) + 1)
        scores = entity_scores([r["spans"] for r in self.valid], self.predict([r["text"] for r in self.valid]))
        self.history.append(
            {
                "epoch": epoch,
                "train_loss": None,
                "valid_precision": scores["precision"],
                "valid_recall": scores["recall"],
                "valid_f1": scores["f1"],
            }
        )
        log.info("epoch %d: valid P %.3f R %.3f F1 %.3f", epoch, scores["precision"], scores["recall"], scores["f1"])
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


def fit(
    save_model: Callable[[Path], None],
    make_trainer: Callable[[dict, list], LibraryTrainer],
    predict: Predictor,
    settings: dict,
    valid: Records,
    out_dir: Path,
    training: GlinerTraining | SpanMarkerTraining,
) -> TrainingResult:
    """Train with per-epoch validation; the best epoch's model (plus its predict settings) ends in out_dir.

    make_trainer(args, callbacks) builds the library's trainer from the shared TrainingArguments kwargs;
    save_model(directory) writes a self-contained, reloadable model.
    """

    def save(directory: Path) -> None:
        save_model(directory)
        write_settings(directory, settings)

    with replacing_dir(out_dir) as staging, tempfile.TemporaryDirectory() as scratch:
        best = BestByValidF1(predict, save, valid, staging, training.patience)
        args = {
            "output_dir": scratch,
            "learning_rate": training.learning_rate,
            "weight_decay": training.weight_decay,
            "warmup_ratio": training.warmup_ratio,
            "per_device_train_batch_size": training.batch_size,
            "num_train_epochs": training.epochs,
            "seed": training.seed,
            "data_seed": training.seed,
            "save_strategy": "no",
            "eval_strategy": "no",
            "logging_strategy": "epoch",
            "dataloader_num_workers": 0,
            "report_to": "none",
            **device_args(training.device),
        }
        trainer = make_trainer(args, [best])
        trainer.remove_callback(ProgressCallback)  # the library's unnamed bar, for the same bar named
        trainer.add_callback(NamedProgress(student_label(training)))
        run = trainer.train()
        if not staging.exists():
            raise PipelineError(f"no checkpoint was saved in {staging}: did training run at least one epoch?")
    return TrainingResult(best.history, best.best_epoch, best.best_f1, run.metrics.get("train_steps_per_second"))


def device_args(choice: str) -> dict:
    """TrainingArguments for `device: auto | cpu | cuda`: auto takes the GPU when torch sees one; on CUDA, bf16
    mixed precision where the card has it (else fp16). A GPU run gives other, equally valid checkpoints."""
    import torch

    cuda = torch.cuda.is_available()
    if choice == "cuda" and not cuda:
        raise ParamsError(
            "params.yaml: device: 'cuda' is not allowed here: torch sees no GPU (install a CUDA build of "
            "torch, or set device: auto / cpu)"
        )
    if choice == "cpu" or not cuda:
        return {"use_cpu": True}
    bf16 = torch.cuda.is_bf16_supported()
    return {"use_cpu": False, "bf16": bf16, "fp16": not bf16}
