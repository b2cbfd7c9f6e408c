"""argilla_review: the labels training uses, per split, with where each one came from.

Output columns added to the split tables: `spans` (the label to train and evaluate on), `llm_spans`
(the teacher's, kept to score it), `reviewed`, `label_source`.
Mode `llm_only` (the default until a server is configured) passes the teacher's spans through,
marks every record reviewed=false and says so. Records whose answer was invalid have no usable label
(label_source=none): training and evaluation leave them out and count them.
"""
from __future__ import annotations

from pathlib import Path

import polars as pl

from stages.common.io import log, read_table, setup_logging, write_json, write_table
from stages.common.params import load_params, require
from stages.split import SPLITS

SPLIT_DIR = Path("data/split")
OUT_DIR = Path("data/reviewed")
METRICS = Path("metrics/review.json")
MODES = ("llm_only",)


def pass_through(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.with_columns(
        llm_spans=pl.col("spans"), reviewed=pl.lit(False),
        label_source=pl.when(pl.col("valid")).then(pl.lit("llm")).otherwise(pl.lit("none")))


def main() -> None:
    setup_logging()
    params = load_params("argilla_review")
    mode = require(params, "mode", "argilla_review")
    if mode not in MODES:
        raise SystemExit(f"params.yaml: argilla_review.mode must be one of {MODES}, got {mode!r}")
    metrics = {"mode": mode}
    for name in SPLITS:
        reviewed = pass_through(read_table(SPLIT_DIR / f"{name}.parquet", ["id", "valid", "spans"]))
        write_table(reviewed, OUT_DIR / f"{name}.parquet")
        metrics[name] = {"records": reviewed.height, "reviewed": 0,
                         "unlabelled": int((reviewed["label_source"] == "none").sum())}
    write_json(METRICS, metrics)
    log.warning("argilla_review: mode llm_only: no human review, %s records keep the teacher's spans "
                "(reviewed=false)", {n: metrics[n]["records"] for n in SPLITS})


if __name__ == "__main__":
    main()
