"""scout: a review priority for every sampled headline, learned again each round of review.

A quick "scout" GLiNER is trained on the teacher's labels, overruled by the train headlines reviewers have
submitted in Argilla so far (argilla_pull's snapshot: each round it learns from them), with k-fold cross-fitting:
each headline is scored by a model that never trained on it, so where scout and teacher disagree the teacher is
likelier wrong. That disagreement (1 - the headline's span F1 between the two) is weighed with the teacher's own
signals: an invalid answer, low self-consistency agreement, mentions the alignment had to drop. The priority table
also keeps the scout's score of every teacher span and of its best span the teacher missed, which argilla_review
calibrates on human labels (auto-accept, the next round's order). Reviewers sort and filter by the priority in
Argilla, and it drives the review experiments (scripts/review_priority.py, scripts/review_rounds.py).
"""

from __future__ import annotations

from typing import Any, cast

import polars as pl

from stages.core.cli import run_stage, stage_args
from stages.core.io import log, read_jsonl, read_table, write_json, write_table
from stages.core.metrics import entity_scores
from stages.core.params import load_params
from stages.core.schema import SPLITS
from stages.core.stage_params import ScoutParams
from stages.review.responses import submitted_labels
from stages.review.scouting import SIGNALS, cross_fitted_spans, priorities, scout_recipe
from stages.students.config import FinetuneGlinerParams


def main(argv: list[str] | None = None) -> None:
    args = stage_args(__doc__.splitlines()[0], ("split-dir", "submissions", "out", "metrics"), argv)
    params = load_params(ScoutParams)
    gliner = scout_recipe(params, load_params(FinetuneGlinerParams))
    columns = ["id", "text", "valid", "teacher_spans", "hallucinated", "agreement"]
    rows = [
        r | {"split": name}
        for name in SPLITS
        for r in read_table(args.split_dir / f"{name}.parquet", columns).sort("id").iter_rows(named=True)
    ]
    # Only train reviews teach it: valid picks the students' epochs and test grades them, so their labels must not
    # steer which train headlines get reviewed.
    human = submitted_labels(read_jsonl(args.submissions), {r["id"]: r["text"] for r in rows if r["split"] == "train"})
    scored = cross_fitted_spans(rows, human, params, gliner)
    table = priorities(rows, scored, params.weights.model_dump(), params.seed)
    write_table(table, args.out)
    top = table.filter(pl.col("rank") <= max(1, table.height // 10))
    decided = dict(zip(table["id"].to_list(), table["scout_spans"].to_list()))  # the scouts' spans at threshold
    # a mean of a float column is a float (polars types it as any value)
    metrics: dict[str, Any] = {
        "headlines": table.height,
        "folds": params.folds,
        "mean": {name: round(float(cast(float, table[name].mean())), 4) for name in (*SIGNALS, "priority")},
        "scout_vs_teacher": entity_scores([r["teacher_spans"] for r in rows], [decided[r["id"]] for r in rows]),
        "top_decile_mean_priority": round(float(cast(float, top["priority"].mean())), 4),
    }
    write_json(args.metrics, metrics)
    log.info(
        "scout: %d headlines scored by %d cross-fitted scouts; scout vs teacher F1 %.3f; mean disagreement %.3f -> %s",
        table.height,
        params.folds,
        metrics["scout_vs_teacher"]["f1"],
        metrics["mean"]["disagreement"],
        args.out,
    )


if __name__ == "__main__":
    run_stage(main)
