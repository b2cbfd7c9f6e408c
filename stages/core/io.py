"""Deterministic reading and writing of the pipeline's tables, metrics files and model directories."""

from __future__ import annotations

import csv
import json
import logging
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import polars as pl

from stages.core.errors import InputError

log = logging.getLogger("headline_ner")


def read_table(path: str | Path, columns: list[str] | None = None) -> pl.DataFrame:
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: not found (run the upstream stage first: dvc repro)")
    frame = pl.read_parquet(path)
    missing = [c for c in columns or [] if c not in frame.columns]
    if missing:
        raise InputError(f"{path}: missing column(s) {missing}; has {frame.columns}")
    return frame


def write_table(frame: pl.DataFrame, path: str | Path, sort_by: str = "id") -> None:
    """Sorted rows, no timestamps, written via a temp file so a crash never leaves half a table."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    frame.sort(sort_by).write_parquet(tmp, compression="zstd", statistics=False)
    os.replace(tmp, path)


def write_jsonl(path: str | Path, rows: list[dict]) -> None:
    """One JSON object per line, keys sorted, via a temp file (callers sort the rows)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text("".join(json.dumps(r, sort_keys=True, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    os.replace(tmp, path)


def read_jsonl(path: str | Path) -> list[dict]:
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: not found (run the upstream stage first: dvc repro)")
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")  # what makes a spreadsheet run a cell (OWASP, CSV injection)


def _spreadsheet_safe(value: Any) -> Any:
    """Text a spreadsheet would run as a formula (a headline like `=HYPERLINK(...)`), with a leading ' so it
    shows as text; numbers, and text that reads as one (-0.5), stay as they are."""
    if not isinstance(value, str) or not value.startswith(_FORMULA_START):
        return value
    try:
        float(value)
        return value
    except ValueError:
        return "'" + value


def write_csv(path: str | Path, rows: list[dict], fieldnames: list[str]) -> None:
    """Every CSV the pipeline writes: pipeline text (headlines, span and cluster names) made spreadsheet-safe."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=fieldnames, lineterminator="\n")
        writer.writeheader()
        writer.writerows({key: _spreadsheet_safe(value) for key, value in row.items()} for row in rows)


def write_json(path: str | Path, payload: Any) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")


@contextmanager
def replacing_dir(target: Path) -> Iterator[Path]:
    """A fresh `<target>.partial` to write a directory into; it takes target's place only once the block ends
    without an error, so a crash never leaves half a model where the last good one was."""
    staging = target.with_name(target.name + ".partial")
    if staging.exists():
        shutil.rmtree(staging)
    yield staging
    if target.exists():
        shutil.rmtree(target)
    staging.rename(target)
