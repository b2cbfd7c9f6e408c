"""The scout's core: cross-fitted GLiNER scouts and the review priority of every headline (stages/scout.py runs it).

A scout is trained on the teacher's labels, overruled by the human labels of the train headlines reviewed so far,
with k-fold cross-fitting, so each headline is scored by a model that never trained on it. Where scout and teacher
disagree the teacher is likelier wrong; with the teacher's own signals that makes the priority. The scout's score of
every teacher span and of its best missed span are what calibration (calibration.py) maps to probabilities.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

import polars as pl

from stages.core.io import log
from stages.core.metrics import entity_scores
from stages.core.schema import SPANS, seeded_rank
from stages.core.stage_params import ScoutParams
from stages.review.calibration import fold_of, missed_score, teacher_span_scores
from stages.students import gliner as gliner_student
from stages.students.config import FinetuneGlinerParams, GlinerTraining

SIGNALS = ("disagreement", "invalid", "low_agreement", "dropped_mentions")
# Scouts decode down to this score, so every teacher span they considered gets a score to calibrate
# (stages/review/calibration.py); their own spans, which the disagreement compares, are those at GLiNER's
# threshold. Greedy decoding picks spans by score, so the spans above it are the same either way.
SCORE_FLOOR = 0.05


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


def scout_recipe(params: ScoutParams, finetune: FinetuneGlinerParams) -> GlinerTraining:
    """The finetune_gliner recipe, quick: only its epochs, seed and no early stop come from scout."""
    gliner = finetune.training().model_copy(update={"epochs": params.epochs, "seed": params.seed, "patience": 0})
    assert isinstance(gliner, GlinerTraining)  # what FinetuneGlinerParams.training() builds
    return gliner


def cross_fitted_spans(
    rows: list[dict], human: dict[str, list[dict] | None], params: ScoutParams, gliner: GlinerTraining
) -> dict[str, list[dict]]:
    """Every row's spans, down to SCORE_FLOOR, from cross-fitted scouts trained on the rows of the other folds: on
    the human label where `human` has one ({id: spans}; None: discarded, so not trained on), else on the teacher's
    valid answer."""
    folds_done: list[int] = []

    def fit_predict(records: list[dict], texts: list[str]) -> list[list[dict]]:
        folds_done.append(len(texts))
        log.info(
            "scout: fold %d of %d: a scout trains on %d headlines (%d human-labelled), then scores %d it never saw",
            len(folds_done),
            params.folds,
            len(records),
            sum(r["id"] in human for r in records),
            len(texts),
        )
        if not records:  # no label to learn from: this scout has no opinion
            log.warning(
                "scout: nothing to train on outside a fold of %d headlines; they get no scout spans", len(texts)
            )
            return [[] for _ in texts]
        with tempfile.TemporaryDirectory(prefix="scout-") as scratch:
            # Held-out headlines must not pick the epoch (that would leak): a slice of the training ones does.
            gliner_student.train(gliner, records, records[:64], Path(scratch) / "model")
            return gliner_student.load(Path(scratch) / "model", decode={"threshold": SCORE_FLOOR})(texts)

    return cross_fit(scout_records(rows, human), params.folds, params.seed, fit_predict, lambda r: r["valid"])


def scout_records(rows: list[dict], human: dict[str, list[dict] | None]) -> list[dict]:
    """What a scout may learn from each row: its human label where it has one, else the teacher's answer; `valid`
    says whether it trains (not a discarded headline, not an invalid answer)."""
    return [
        {"id": r["id"], "text": r["text"], "spans": human[r["id"]] or [], "valid": human[r["id"]] is not None}
        if r["id"] in human
        else {"id": r["id"], "text": r["text"], "spans": r["teacher_spans"] or [], "valid": r["valid"]}
        for r in rows
    ]
