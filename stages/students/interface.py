"""What every student module provides (gliner.py, spanmarker.py); registry.py holds them by name."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from stages.students.training import Predictor, Records, TrainingResult


class Student(Protocol):
    NAME: str

    def train(self, training, train_records: Records, valid_records: Records, out_dir: Path) -> TrainingResult: ...

    def load(self, model_dir: Path, int8: bool = False, decode: Mapping[str, Any] | None = None) -> Predictor:
        """decode: settings that override the folder's predict settings (config.PredictParams.decode)."""
        ...

    def export(self, model_dir: Path, into: Path) -> None: ...

    def zero_shot(self, training, decode: Mapping[str, Any] | None = None) -> Predictor: ...
