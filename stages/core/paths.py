"""The paths dvc.yaml names under `vars: paths:` (data/reviewed, models/gliner, ...), for the scripts and
benchmarks that read what the pipeline wrote; stages get theirs on the command line."""

from __future__ import annotations

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def dvc_paths(root: Path = ROOT) -> dict[str, Path]:
    entries = yaml.safe_load((root / "dvc.yaml").read_text())["vars"]
    named = next(entry["paths"] for entry in entries if isinstance(entry, dict) and "paths" in entry)
    return {name: root / path for name, path in named.items()}
