"""What a model folder says of itself, in files beside its weights: how to predict (student name, entity label,
threshold, format: SETTINGS_FILE), so `load(directory)` needs nothing but the directory, and what its training
was (SUMMARY_FILE: data sizes, the kept epoch, params), which the export stage's model card reports. A saved folder's
GLiNER threshold is the one training selected its epoch at; an exported folder's is params `predict.gliner`."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal, cast

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from stages.core.errors import ModelError
from stages.students.config import PredictParams
from stages.students.runtime import EXPORT_FORMAT

SETTINGS_FILE = "headline_ner.json"
SUMMARY_FILE = "training.json"
# Each student's decode settings (a GLiNER threshold) are checked by the model that checks them in params `predict`.
DECODE = {name: cast(type[BaseModel], info.annotation) for name, info in PredictParams.model_fields.items()}


class FolderSettings(BaseModel):
    """The keys any student's settings may hold; the others are its decode settings (DECODE). Strict: a JSON
    string is no number, a bool no threshold."""

    model_config = ConfigDict(extra="allow", strict=True)
    student: Literal[tuple(DECODE)] | None = None  # type: ignore[valid-type]  # registry name; none: saved by hand
    student_module: str | None = None  # legacy: registry.student_name looks it up, known modules only
    entity_label: str = Field(min_length=1)
    format: Literal[EXPORT_FORMAT] | None = None  # type: ignore[valid-type]  # an export's; a saved one has none


def write_settings(model_dir: Path, settings: dict) -> None:
    (model_dir / SETTINGS_FILE).write_text(json.dumps(settings, indent=2, sort_keys=True) + "\n")


def read_settings(model_dir: Path) -> dict:
    """The folder's predict settings, checked (every load reads them first): ModelError names the file and each
    key that is wrong, before any model file is opened or any request is answered."""
    path = model_dir / SETTINGS_FILE
    if not path.exists():
        raise ModelError(f"{path}: missing; {model_dir} was not written by a finetune or export stage")
    try:
        settings = json.loads(path.read_bytes())
    except ValueError as error:  # UnicodeDecodeError too
        raise ModelError(f"{path}: not JSON ({error})") from None
    if not isinstance(settings, dict):
        raise ModelError(f"{path}: must be a JSON object of predict settings; got {type(settings).__name__}")
    found = settings_problems(settings)
    if found:
        raise ModelError(f"{path}: " + "; ".join(found))
    return settings


def settings_problems(settings: dict) -> list[str]:
    """What is wrong in a folder's settings: the common keys, then the decode keys as the named student's decode
    model checks them (a folder saved by hand, or a legacy one, names none: they must be some student's; the
    problems of the one they are closest to)."""
    try:
        decode = FolderSettings.model_validate(settings).model_extra or {}
    except ValidationError as error:
        return problems(error)
    name = settings.get("student")
    found = [decode_problems(DECODE[student], decode) for student in ([name] if name else DECODE)]
    return [] if [] in found else min(found, key=len)


def decode_problems(model: type[BaseModel], decode: dict) -> list[str]:
    try:
        model.model_validate(decode, strict=True)
    except ValidationError as error:
        return problems(error)
    return []


def problems(error: ValidationError) -> list[str]:
    """'key: what is wrong, got value' for each problem pydantic found."""
    lines = []
    for item in error.errors():
        key = ".".join(map(str, item["loc"]))
        if item["type"] == "missing":
            lines.append(f"{key}: missing")
        elif item["type"] == "extra_forbidden":
            lines.append(f"{key}: unknown key")
        else:
            lines.append(f"{key}: {item['msg'][0].lower()}{item['msg'][1:]}, got {item['input']!r}")
    return lines


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
