"""What a model folder says of itself, in files beside its weights: how to predict (student name, entity label,
threshold, format: SETTINGS_FILE), so `load(directory)` needs nothing but the directory, and what its training
was (SUMMARY_FILE: data sizes, the kept epoch, params), which the export stage's model card reports. A saved folder's
GLiNER threshold is the one training selected its epoch at; an exported folder's is params `predict.gliner`."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from stages.core.errors import ModelError

SETTINGS_FILE = "headline_ner.json"
SUMMARY_FILE = "training.json"


def write_settings(model_dir: Path, settings: dict) -> None:
    (model_dir / SETTINGS_FILE).write_text(json.dumps(settings, indent=2, sort_keys=True) + "\n")


def read_settings(model_dir: Path) -> dict:
    path = model_dir / SETTINGS_FILE
    if not path.exists():
        raise ModelError(f"{path}: missing; {model_dir} was not written by a finetune or export stage")
    return json.loads(path.read_text())


@dataclass
class TrainingSummary:
    """What a finetune run did, written beside the model it kept."""

    student: str  # registry name
    title: str
    base_model: str
    revision: str | None
    entity_label: str
    epochs: int
    sizes: dict[str, int]  # train, train_human, valid, valid_human
    best: dict  # the kept epoch's history row
    params: dict  # the finetune section as run (the chosen recipe's keys)
    examples: list[dict] = field(default_factory=list)  # a few training records that name a company
    datasets: list[str] = field(default_factory=list)  # hub ids of the headline source, where it is one


def write_summary(model_dir: Path, summary: TrainingSummary) -> None:
    (model_dir / SUMMARY_FILE).write_text(json.dumps(asdict(summary), indent=2, sort_keys=True) + "\n")


def read_summary(model_dir: Path) -> TrainingSummary:
    path = model_dir / SUMMARY_FILE
    if not path.exists():
        raise ModelError(f"{path}: missing; {model_dir} was not written by a finetune stage")
    return TrainingSummary(**json.loads(path.read_text()))
