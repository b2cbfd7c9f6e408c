"""evaluate: entity-level P/R/F1 (exact character spans) on the test split for each student and the teacher.

The reference is the reviewed label (human where reviewed, else the teacher's). metrics/metrics.json
says how much of the reference is human: with no review the teacher is scored against itself.
"""
from __future__ import annotations

from pathlib import Path

import polars as pl

from stages import finetune_gliner, finetune_spanmarker
from stages.common.io import log, read_table, setup_logging, write_json
from stages.common.metrics import entity_scores
from stages.common.params import load_params
from stages.common.training import labelled_records

TEST = Path("data/reviewed/test.parquet")
STUDENTS = {"gliner": (finetune_gliner.load, Path("models/gliner")),
            "spanmarker": (finetune_spanmarker.load, Path("models/spanmarker"))}
METRICS = Path("metrics/metrics.json")


def evaluate(test: pl.DataFrame, predictors: dict, batch_size: int) -> dict:
    records = labelled_records(test)
    gold = [r["spans"] for r in records]
    teacher = dict(zip(test["id"].to_list(), test["llm_spans"].to_list()))
    sources = test.filter(pl.col("label_source") != "none")["label_source"].value_counts()
    result = {"test_records": len(records),
              "reference": {r["label_source"]: r["count"] for r in sources.iter_rows(named=True)},
              "teacher": entity_scores(gold, [teacher[r["id"]] for r in records])}
    for name, predict in predictors.items():
        result[name] = entity_scores(gold, predict([r["text"] for r in records], batch_size))
    return result


def main() -> None:
    setup_logging()
    params = load_params("evaluate")
    test = read_table(TEST, ["id", "text", "spans", "llm_spans", "label_source"])
    predictors = {name: load(model_dir)[1] for name, (load, model_dir) in STUDENTS.items()}
    metrics = evaluate(test, predictors, params.get("batch_size", 32))
    write_json(METRICS, metrics)
    for name in ("teacher", *STUDENTS):
        log.info("evaluate: %-10s P %.3f R %.3f F1 %.3f", name, metrics[name]["precision"], metrics[name]["recall"],
                 metrics[name]["f1"])
    if metrics["reference"].get("human", 0) < metrics["test_records"]:
        log.warning("evaluate: %d of %d test references are the teacher's own labels (not human-reviewed)",
                    metrics["test_records"] - metrics["reference"].get("human", 0), metrics["test_records"])


if __name__ == "__main__":
    main()
