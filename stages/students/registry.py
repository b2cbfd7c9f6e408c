"""The students, by name, behind one interface: finetune, evaluate and the scripts and benchmarks pick them here.

A student module has train(training, train_records, valid_records, out_dir) -> {history, best_epoch,
best_valid_f1, train_steps_per_s}; load(directory[, int8]) -> predict(texts, batch_size); export(model_dir,
export_dir); zero_shot(training) -> predict. `training` is the flat model of its finetune section's
chosen recipe (params.py); records are {id, text, spans[, label_source]} (records.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from stages.core.params import PARAMS_FILE, load_params
from stages.students import gliner as gliner_student
from stages.students import spanmarker as spanmarker_student
from stages.students.config import FinetuneGlinerParams, FinetuneSpanMarkerParams, GlinerTraining, SpanMarkerTraining
from stages.students.training import Predictor


class Student(Protocol):
    def train(self, training, train_records: list[dict], valid_records: list[dict], out_dir: Path) -> dict: ...

    def load(self, model_dir: Path, int8: bool = False) -> Predictor: ...

    def export(self, model_dir: Path, export_dir: Path) -> None: ...

    def zero_shot(self, training) -> Predictor: ...


STUDENTS: dict[str, Student] = {"gliner": gliner_student, "spanmarker": spanmarker_student}


SECTIONS = {"gliner": FinetuneGlinerParams, "spanmarker": FinetuneSpanMarkerParams}  # whose SECTION is its stage


def training_params(name: str, path: Path = PARAMS_FILE) -> GlinerTraining | SpanMarkerTraining:
    return load_params(SECTIONS[name], path).training()
