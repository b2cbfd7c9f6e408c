"""split: assign sampled headlines to train / valid / test by date ranges from params."""
from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl

from stages.common.io import log, read_table, setup_logging, write_json, write_table
from stages.common.params import load_params, require
from stages.common.schema import SPLITS

SAMPLE = Path("data/sampled/sample.parquet")
OUT_DIR = Path("data/split")
METRICS = Path("metrics/split.json")


def split_by_date(frame: pl.DataFrame, ranges: dict[str, dict]) -> tuple[dict[str, pl.DataFrame], int]:
    """Rows per split (inclusive date ranges) and the number of rows outside every range."""
    parts, assigned = {}, pl.Series([False] * frame.height)
    for name in SPLITS:
        if name not in ranges:
            raise SystemExit(f"params.yaml: missing split.ranges.{name}")
        start, end = (dt.date.fromisoformat(str(ranges[name][k])) for k in ("start", "end"))
        inside = frame["date"].is_between(start, end)
        if (inside & assigned).any():
            raise SystemExit(f"params.yaml: split.ranges.{name} overlaps another split")
        assigned = assigned | inside
        parts[name] = frame.filter(inside)
        if parts[name].height == 0:
            raise SystemExit(f"split '{name}' ({start}..{end}) is empty: {frame.height} sampled headlines "
                             f"span {frame['date'].min()}..{frame['date'].max()}; widen split.ranges or "
                             f"label more headlines (llm_label.limit)")
    return parts, int((~assigned).sum())


def main() -> None:
    setup_logging()
    params = load_params("split")
    parts, outside = split_by_date(read_table(SAMPLE, ["id", "date"]), require(params, "ranges", "split"))
    for name, part in parts.items():
        write_table(part, OUT_DIR / f"{name}.parquet")
    counts = {name: part.height for name, part in parts.items()} | {"outside_ranges": outside}
    write_json(METRICS, counts)
    log.info("split: %s", counts)


if __name__ == "__main__":
    main()
