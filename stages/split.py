"""split: assign sampled headlines to train / valid / test by date ranges from params."""

from __future__ import annotations

import argparse
from pathlib import Path

import polars as pl

from stages.core.io import log, read_table, setup_logging, write_json, write_table
from stages.core.params import load_params
from stages.core.schema import SPLITS
from stages.core.stage_params import RequiredDateRange, SplitParams


def split_by_date(frame: pl.DataFrame, ranges: dict[str, RequiredDateRange]) -> tuple[dict[str, pl.DataFrame], int]:
    """Rows per split (inclusive date ranges) and the number of rows outside every range."""
    parts, assigned = {}, pl.Series([False] * frame.height)
    for name in SPLITS:
        start, end = ranges[name].start, ranges[name].end
        inside = frame["date"].is_between(start, end)
        if (inside & assigned).any():
            raise SystemExit(f"params.yaml: split.ranges.{name} overlaps another split")
        assigned = assigned | inside
        parts[name] = frame.filter(inside)
        if parts[name].height == 0:
            raise SystemExit(
                f"split '{name}' ({start}..{end}) is empty: {frame.height} sampled headlines "
                f"span {frame['date'].min()}..{frame['date'].max()}; widen split.ranges or "
                f"label more headlines (llm_label.limit)"
            )
    return parts, int((~assigned).sum())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name in ("sample", "out-dir", "metrics"):
        parser.add_argument(f"--{name}", type=Path, required=True)
    args = parser.parse_args(argv)
    setup_logging()
    params = load_params(SplitParams)
    parts, outside = split_by_date(read_table(args.sample, ["id", "date"]), params.ranges)
    for name, part in parts.items():
        write_table(part, args.out_dir / f"{name}.parquet")
    counts = {name: part.height for name, part in parts.items()} | {"outside_ranges": outside}
    write_json(args.metrics, counts)
    log.info("split: %s", counts)


if __name__ == "__main__":
    main()
