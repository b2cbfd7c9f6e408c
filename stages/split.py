"""split: assign sampled headlines to train / valid / test by date ranges from params."""

from __future__ import annotations

from collections.abc import Mapping
from typing import cast

import polars as pl

from stages.core.cli import run_stage, stage_args
from stages.core.errors import ParamsError
from stages.core.io import log, read_table, write_json, write_table
from stages.core.params import load_params
from stages.core.schema import SPLITS
from stages.core.stage_params import RequiredDateRange, SplitParams


def split_by_date(frame: pl.DataFrame, ranges: Mapping[str, RequiredDateRange]) -> tuple[dict[str, pl.DataFrame], int]:
    """Rows per split (inclusive date ranges) and the number of rows outside every range."""
    parts, assigned = {}, pl.Series([False] * frame.height)
    for name in SPLITS:
        start, end = ranges[name].start, ranges[name].end
        inside = frame["date"].is_between(start, end)
        if (inside & assigned).any():
            raise ParamsError(f"params.yaml: split.ranges.{name} overlaps another split")
        assigned = assigned | inside
        parts[name] = frame.filter(inside)
        if parts[name].height == 0:
            raise ParamsError(
                f"split '{name}' ({start}..{end}) is empty: {frame.height} sampled headlines "
                f"span {frame['date'].min()!s}..{frame['date'].max()!s}; widen split.ranges or "
                f"label more headlines (llm_label.limit)"
            )
    return parts, int((~assigned).sum())


def main(argv: list[str] | None = None) -> None:
    args = stage_args(__doc__.splitlines()[0], ("sample", "out-dir", "metrics"), argv)
    params = load_params(SplitParams)
    ranges = cast(Mapping[str, RequiredDateRange], params.ranges)  # keyed by the split names (SPLITS)
    parts, outside = split_by_date(read_table(args.sample, ["id", "date"]), ranges)
    for name, part in parts.items():
        write_table(part, args.out_dir / f"{name}.parquet")
    counts = {name: part.height for name, part in parts.items()} | {"outside_ranges": outside}
    write_json(args.metrics, counts)
    log.info("split: %s", counts)


if __name__ == "__main__":
    run_stage(main)
