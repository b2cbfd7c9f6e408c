"""scout: a review priority for every sampled headline, from what exists before review.

A quick "scout" GLiNER is trained on the teacher's labels with k-fold cross-fitting: each headline is
scored by a model that never trained on it, so where scout and teacher disagree the teacher is likelier
wrong. That disagreement (1 - the headline's span F1 between the two) is weighed with the teacher's own
signals: an invalid answer, low self-consistency agreement, mentions the alignment had to drop. The
priority table goes to Argilla as record metadata (reviewers sort and filter by it) and drives the
review-priority experiment (scripts/review_priority.py).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import polars as pl

from stages.core.cli import run_stage, stage_args
from stages.core.io import log, read_table, write_json, write_table
from stages.core.metrics import entity_scores
from stages.core.params import load_params
from stages.core.schema import SPANS, SPLITS, seeded_rank
from stages.core.stage_params import ScoutParams
from stages.review.calibration import missed_score, teacher_span_scores
from stages.students import gliner as gliner_student
from stages.students.config import FinetuneGlinerParams, GlinerTraining

SIGNALS = ("disagreement", "invalid", "low_agreement", "dropped_mentions")
# Scouts decode down to this score, so every teacher span they considered gets a score to calibrate
# (stages/review/calibration.py); their own spans, which the disagreement compares, are those at GLiNER's
# threshold. Greedy decoding picks spans by score, so the spans above it are the same either way.
SCORE_FLOOR = 0.05


def fold_of(record_id: str, folds: int, seed: int) -> int:
    return int(seeded_rank(seed, record_id)[:8], 16) % folds


def cross_fit(
    records: list[dict],
    folds: int,
    seed: int,
    fit_predict: Callable[[list[dict], list[str]], list[list[dict]]],
    trainable: Callable[[dict], bool],
) -> dict[str, list[dict]]:
    """Spans for every record from a model trained on the other folds only (their `trainable` records).

    fit_predict(train_records, texts) trains a model and returns its spans for each text.
    """
    predicted: dict[str, list[dict]] = {}
    for fold in range(folds):
        held_out = [r for r in records if fold_of(r["id"], folds, seed) == fold]
        if held_out:
            others = [r for r in records if fold_of(r["id"], folds, seed) != fold and trainable(r)]
            predicted.update(zip((r["id"] for r in held_out), fit_predict(others, [r["text"] for r in held_out])))
    return predicted


def teacher_signals(row: dict) -> dict[str, float]:
    """What the teacher's own answer says about how far to trust it (each 0..1)."""
    agreement = row.get("agreement")
    return {
        "invalid": 0.0 if row["valid"] else 1.0,
        "low_agreement": 0.0 if agreement is None else 1.0 - agreement,
        "dropped_mentions": 1.0 if row.get("hallucinated") else 0.0,
    }


def priorities(
    rows: list[dict], scout_spans: dict[str, list[dict]], weights: dict[str, float], seed: int
) -> pl.DataFrame:
    """One row per headline: each signal, the weighted priority, and its rank (1 = review first; ties in a
    seeded order)."""
    scored = []
    for row in rows:
        considered = scout_spans.get(row["id"], [])
        spans = [s for s in considered if s["score"] >= gliner_student.TRAINING_THRESHOLD]
        teacher = row["teacher_spans"] or []
        agree = entity_scores([teacher], [spans])
        disagreement = 0.0 if not teacher and not spans else 1.0 - agree["f1"]
        signals = {"disagreement": round(disagreement, 4), **teacher_signals(row)}
        priority = round(sum(weights[name] * value for name, value in signals.items()), 4)
        scored.append(
            {
                "id": row["id"],
                "split": row["split"],
                "priority": priority,
                **signals,
                "scout_spans": [{"start": s["start"], "end": s["end"], "text": s["text"]} for s in spans],
                # what calibration fits on human labels: the scout's score of each teacher span, in their order
                # (0.0: it did not consider it), and of its best span the teacher missed
                "teacher_span_scores": teacher_span_scores(teacher, considered),
                "missed_score": missed_score(teacher, considered),
            }
        )
    scored.sort(key=lambda r: (-r["priority"], seeded_rank(seed, r["id"])))
    for rank, row in enumerate(scored, start=1):
        row["rank"] = rank
    return pl.DataFrame(
        scored,
        schema={
            "id": pl.String,
            "split": pl.String,
            "priority": pl.Float64,
            **{name: pl.Float64 for name in SIGNALS},
            "scout_spans": SPANS,
            "teacher_span_scores": pl.List(pl.Float64),
            "missed_score": pl.Float64,
            "rank": pl.Int64,
        },
    )


def main(argv: list[str] | None = None) -> None:
    args = stage_args(__doc__.splitlines()[0], ("split-dir", "out", "metrics"), argv)
    params = load_params(ScoutParams)
    # The finetune_gliner recipe, quick: only its epochs, seed and no early stop come from scout.
    gliner = (
        load_params(FinetuneGlinerParams)
        .training()
        .model_copy(update={"epochs": params.epochs, "seed": params.seed, "patience": 0})
    )
    assert isinstance(gliner, GlinerTraining)  # what FinetuneGlinerParams.training() builds
    columns = ["id", "text", "valid", "teacher_spans", "hallucinated", "agreement"]
    rows = [
        r | {"split": name}
        for name in SPLITS
        for r in read_table(args.split_dir / f"{name}.parquet", columns).sort("id").iter_rows(named=True)
    ]

    folds_done: list[int] = []

    def fit_predict(records: list[dict], texts: list[str]) -> list[list[dict]]:
        folds_done.append(len(texts))
        log.info(
            "scout: fold %d of %d: a scout trains on %d headlines, then scores %d it never saw",
            len(folds_done),
            params.folds,
            len(records),
            len(texts),
        )
        if not records:  # no valid teacher answer to learn from: this scout has no opinion
            log.warning(
                "scout: no valid teacher answer outside a fold of %d headlines; they get no scout spans", len(texts)
            )
            return [[] for _ in texts]
        with tempfile.TemporaryDirectory(prefix="scout-") as scratch:
            # Held-out headlines must not pick the epoch (that would leak): a slice of the training ones does.
            gliner_student.train(gliner, records, records[:64], Path(scratch) / "model")
            return gliner_student.load(Path(scratch) / "model", decode={"threshold": SCORE_FLOOR})(texts)

    trained_on_teacher = [
        {"id": r["id"], "text": r["text"], "spans": r["teacher_spans"] or [], "valid": r["valid"]} for r in rows
    ]
    scout_spans = cross_fit(trained_on_teacher, params.folds, params.seed, fit_predict, lambda r: r["valid"])
    table = priorities(rows, scout_spans, params.weights.model_dump(), params.seed)
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
