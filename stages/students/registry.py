"""The students, by registry name ("gliner", "spanmarker"), behind one interface: every stage, the endpoint
handler, the scripts and the benchmarks pick them here, and model folders name theirs the same way.

A student module has NAME; train(training, train_records, valid_records, out_dir) -> TrainingResult;
load(directory[, int8, decode]) -> predict(texts, batch_size) (decode: config.PredictParams.decode, over the folder's
predict settings); export(model_dir, into) (writes the int8 ONNX form into a directory); zero_shot(training[, decode])
-> predict. `training` is the flat model of its finetune section's chosen recipe
(config.py); records are core.schema.Record.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from stages.core.errors import ModelError
from stages.core.legacy import student_of_module
from stages.core.params import PARAMS_FILE, load_params
from stages.students import gliner, spanmarker
from stages.students.config import (
    ChoosesRecipe,
    FinetuneGlinerParams,
    FinetuneSpanMarkerParams,
    GlinerTraining,
    SpanMarkerTraining,
)
from stages.students.interface import Student
from stages.students.runtime import EXPORT_FILE, EXPORT_FORMAT
from stages.students.settings import SETTINGS_FILE, read_settings
from stages.students.training import Predictor

STUDENTS: dict[str, Student] = {gliner.NAME: gliner, spanmarker.NAME: spanmarker}
# The files each student's load reads beside its settings, any one of each group: checked first, so a missing one is
# named instead of met as the library's own error (GLiNER with no tokenizer: "stat: path should be string ...").
TOKENIZER = (("tokenizer_config.json",), ("tokenizer.json", "vocab.txt"))
NEEDS = {gliner.NAME: (("gliner_config.json",), *TOKENIZER), spanmarker.NAME: (("config.json",), *TOKENIZER)}
WEIGHTS = {True: (EXPORT_FILE,), False: ("model.safetensors", "pytorch_model.bin")}  # by exported


def student(name: str) -> Student:
    if name not in STUDENTS:
        raise ModelError(f"unknown student {name!r}; known: {', '.join(sorted(STUDENTS))}")
    return STUDENTS[name]


def student_name(settings: dict, model_dir: Path) -> str:
    """The registry name of the student a folder holds ("gliner"), as its settings give it."""
    name = settings.get("student") or student_of_module(settings.get("student_module"))
    if not name:
        raise ModelError(f'{model_dir / SETTINGS_FILE}: names no student (expected "student": "gliner" or ...)')
    return name


def require_files(model_dir: Path, name: str, exported: bool) -> None:
    """ModelError naming the folder and the first file the student's load needs that it lacks."""
    for group in (*NEEDS[name], WEIGHTS[exported]):
        if not any((model_dir / file).is_file() for file in group):
            how = "re-export it: dvc repro export" if exported else "retrain it: dvc repro"
            raise ModelError(f"{model_dir}: {' or '.join(group)} missing, which the {name} student needs; {how}")


def load(model_dir: Path, int8: bool = False, decode: Mapping[str, Any] | None = None) -> Predictor:
    """predict(texts, batch_size) of any saved or exported student folder, by the student its settings name."""
    settings = read_settings(model_dir)
    name = student_name(settings, model_dir)
    require_files(model_dir, name, settings.get("format") == EXPORT_FORMAT)
    return student(name).load(model_dir, int8, decode)


SECTIONS: dict[str, type[ChoosesRecipe]] = {
    "gliner": FinetuneGlinerParams,
    "spanmarker": FinetuneSpanMarkerParams,
}  # whose SECTION is its stage


def training_params(name: str, path: Path = PARAMS_FILE) -> GlinerTraining | SpanMarkerTraining:
    return load_params(SECTIONS[name], path).training()
