"""How to predict with a saved or exported student (entity label, threshold, format): a JSON file beside its
weights, so `load(directory)` needs nothing but the directory."""

from __future__ import annotations

import json
from pathlib import Path

SETTINGS_FILE = "headline_ner.json"


def write_settings(model_dir: Path, settings: dict) -> None:
    (model_dir / SETTINGS_FILE).write_text(json.dumps(settings, indent=2, sort_keys=True) + "\n")


def read_settings(model_dir: Path) -> dict:
    path = model_dir / SETTINGS_FILE
    if not path.exists():
        raise SystemExit(f"{path}: missing; {model_dir} was not written by a finetune stage")
    return json.loads(path.read_text())
