"""argilla_review's tables through the review rules: each record's teacher label judged by the scout's scores, the
unreviewed ones auto-accept takes unseen, and the queue of the next round of review.

The rules (accept.py, rounds.py) and the calibration report learn from train and valid human labels only: the test
split's labels measure them, held out, and never steer which labels train or which headlines get reviewed.
"""

from __future__ import annotations

import polars as pl

from stages.core.stage_params import ReviewParams
from stages.labels.records import ACCEPTED, HUMAN
from stages.review.accept import (
    AcceptRule,
    JudgedLabel,
    acceptance,
    calibration_report,
    cross_fitted_acceptance,
    fit_rule,
    supported,
)
from stages.review.rounds import expected_errors, fit_calibrations, label_confidence, next_batch


def judged_labels(frame: pl.DataFrame, scores: dict[str, dict]) -> list[JudgedLabel]:
    """The frame's human-labelled and unreviewed records with the scout's scores of their teacher label ({id:
    {teacher_span_scores, missed_score}}; an invalid answer is judged too: it waits for a reviewer); a discarded
    record has nothing to judge."""
    judged = []
    for row in frame.filter((pl.col("label_source") == HUMAN) | ~pl.col("reviewed")).iter_rows(named=True):
        teacher = row["teacher_spans"] or []
        scored = scores.get(row["id"])
        if scored is not None and len(scored["teacher_span_scores"]) != len(teacher):
            scored = None  # scores of another teacher answer (a priority table of another run) vouch for nothing
        judged.append(
            JudgedLabel(
                id=row["id"],
                valid=row["valid"] and scored is not None,
                teacher=tuple((s["start"], s["end"]) for s in teacher),
                span_scores=tuple(scored["teacher_span_scores"]) if scored else (0.0,) * len(teacher),
                no_other=1.0 - scored["missed_score"] if scored else 0.0,
                agreement=row["agreement"],
                human=tuple((s["start"], s["end"]) for s in row["label_spans"] or [])
                if row["label_source"] == HUMAN
                else None,
            )
        )
    return judged


def learned_from(judged: dict[str, list[JudgedLabel]]) -> list[JudgedLabel]:
    """The human-labelled headlines the rule and the calibrations learn from: train and valid only, so the test
    split's labels measure them, held out."""
    return [label for name in ("train", "valid") for label in judged[name] if label.human is not None]


def auto_accept(
    merged: dict[str, pl.DataFrame], judged: dict[str, list[JudgedLabel]], params: ReviewParams
) -> tuple[dict[str, pl.DataFrame], dict, dict[str, list[dict]]]:
    """The frames with the unreviewed labels the rule accepts marked `accepted`; the calibration metrics and the
    reliability curves."""
    fit_on = learned_from(judged)
    held_out = [label for label in judged["test"] if label.human is not None]
    target = params.accept_precision
    rule = fit_rule(fit_on, target) if target is not None else AcceptRule(None, None)
    accepted = {
        name: {label.id for label in labels if label.human is None and rule.accepts(label)}
        for name, labels in judged.items()
    }
    sources, curves = calibration_report(fit_on, params.calibration_folds, params.seed)
    metrics = {
        "accept_precision": target,
        "fitted_on": {
            "headlines": len(fit_on),
            "valid_headlines": sum(label.valid for label in fit_on),
            "spans": sum(len(label.teacher) for label in fit_on if label.valid),
        },
        "rule": {"span_threshold": rule.span_threshold, "no_other_company_threshold": rule.no_other_threshold},
        "supported_precision": supported(fit_on),
        "cross_fitted": cross_fitted_acceptance(fit_on, target, params.calibration_folds, params.seed)
        if target is not None
        else None,
        "test_held_out": acceptance([(label, rule.accepts(label)) for label in held_out]),
        "accepted_unreviewed": {name: len(ids) for name, ids in accepted.items()},
        "sources": sources,
    }
    marked = {
        name: frame.with_columns(
            pl.when(pl.col("id").is_in(sorted(accepted[name])))
            .then(pl.lit(ACCEPTED))
            .otherwise(pl.col("label_source"))
            .alias("label_source")
        )
        for name, frame in merged.items()
    }
    return marked, metrics, curves


def review_queue(
    judged: dict[str, list[JudgedLabel]],
    marked: dict[str, pl.DataFrame],
    priority: dict[str, float],
    params: ReviewParams,
) -> pl.DataFrame:
    """Per judged headline: its scout priority, expected errors and the calibrated probability that its teacher
    label is right (null before enough human labels to calibrate), and for the train headlines still waiting for a
    reviewer (not reviewed, not accepted), their place in the next round (`batch`: 1 first; null: not this round)."""
    calibrations = fit_calibrations(learned_from(judged))
    accepted = set(marked["train"].filter(pl.col("label_source") == ACCEPTED)["id"].to_list())
    candidates = [label for label in judged["train"] if label.human is None and label.id not in accepted]
    size = params.batch_size if params.batch_size is not None else len(candidates)
    batch = {i: rank for rank, i in enumerate(next_batch(candidates, priority, calibrations, size, params.seed), 1)}
    rows = [
        {
            "id": label.id,
            "split": name,
            "priority": priority.get(label.id),
            "expected_errors": expected_errors(label, calibrations) if calibrations else None,
            "label_confidence": label_confidence(label, calibrations) if calibrations and label.valid else None,
            "batch": batch.get(label.id),
        }
        for name, labels in judged.items()
        for label in labels
    ]
    schema = {"id": pl.String, "split": pl.String, "priority": pl.Float64, "expected_errors": pl.Float64}
    return pl.DataFrame(rows, schema=schema | {"label_confidence": pl.Float64, "batch": pl.Int64})
