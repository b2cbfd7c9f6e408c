"""Entity-level scores on exact character spans: the one definition used by training, evaluation and the
experiment scripts (with a bootstrap CI, partial-overlap F1 and F1 per year for reported scores); and what a
measured speed costs per million headlines."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from stages.core.schema import span_tuples
from stages.core.stage_params import Bootstrap

# One headline's spans, {start, end, ...} dicts as span_tuples reads them: core.schema.Span, or a student's
# predictions (spans with a score, the plain dicts its predict returns).
HeadlineSpans = list[Any]


def entity_scores(gold: Iterable[HeadlineSpans | None], predicted: Iterable[HeadlineSpans | None]) -> dict:
    tp = fp = fn = 0
    for gold_spans, predicted_spans in zip(gold, predicted, strict=True):
        g, p = span_tuples(gold_spans), span_tuples(predicted_spans)
        tp += len(g & p)
        fp += len(p - g)
        fn += len(g - p)
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "precision": round(precision, 4),
        "recall": round(recall, 4),
        "f1": round(f1, 4),
        "tp": tp,
        "fp": fp,
        "fn": fn,
    }


def counts_per_headline(gold: list[HeadlineSpans], predicted: list[HeadlineSpans]) -> np.ndarray:
    """(tp, fp, fn) per headline, the unit the bootstrap resamples."""
    rows = []
    for gold_spans, predicted_spans in zip(gold, predicted, strict=True):
        g, p = span_tuples(gold_spans), span_tuples(predicted_spans)
        rows.append((len(g & p), len(p - g), len(g - p)))
    return np.array(rows, dtype=np.int64).reshape(-1, 3)


def f1_of(tp, fp, fn):
    denominator = 2 * tp + fp + fn
    return np.where(denominator > 0, 2 * tp / np.maximum(denominator, 1), 0.0)


def bootstrap_f1_ci(counts: np.ndarray, resamples: int, seed: int) -> tuple[float, float]:
    """95% percentile interval of F1 over headlines resampled with replacement."""
    if len(counts) == 0:
        return 0.0, 0.0
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(counts), size=(resamples, len(counts)))
    totals = counts[picks].sum(axis=1)
    scores = f1_of(totals[:, 0], totals[:, 1], totals[:, 2])
    return round(float(np.percentile(scores, 2.5)), 4), round(float(np.percentile(scores, 97.5)), 4)


def partial_f1(gold: list[HeadlineSpans], predicted: list[HeadlineSpans]) -> float:
    """F1 where a span counts as found when it overlaps any span on the other side."""

    def overlaps(a, spans):
        return any(a[0] < b[1] and b[0] < a[1] for b in spans)

    hit_pred = total_pred = hit_gold = total_gold = 0
    for gold_spans, predicted_spans in zip(gold, predicted, strict=True):
        g, p = sorted(span_tuples(gold_spans)), sorted(span_tuples(predicted_spans))
        hit_pred += sum(overlaps(s, g) for s in p)
        hit_gold += sum(overlaps(s, p) for s in g)
        total_pred, total_gold = total_pred + len(p), total_gold + len(g)
    precision = hit_pred / total_pred if total_pred else 0.0
    recall = hit_gold / total_gold if total_gold else 0.0
    return round(2 * precision * recall / (precision + recall), 4) if precision + recall else 0.0


def score(records: Sequence[Mapping[str, Any]], predicted: list[HeadlineSpans], bootstrap: Bootstrap) -> dict:
    """Reported scores of predictions against the records' spans (each record may carry a date)."""
    gold = [r["spans"] for r in records]
    result = entity_scores(gold, predicted)
    low, high = bootstrap_f1_ci(counts_per_headline(gold, predicted), bootstrap.resamples, bootstrap.seed)
    result |= {"f1_ci_low": low, "f1_ci_high": high, "partial_f1": partial_f1(gold, predicted)}
    years = sorted({r["date"].year for r in records if r.get("date")})
    if years:
        result["f1_by_year"] = {
            str(y): entity_scores(
                [r["spans"] for r in records if r["date"].year == y],
                [p for r, p in zip(records, predicted) if r["date"].year == y],
            )["f1"]
            for y in years
        }
    return result


def usd_per_million(headlines_per_s: float, usd_per_hour: float) -> float:
    """USD per million headlines of a machine (or endpoint) priced per hour that labels headlines_per_s."""
    return round(1e6 / (headlines_per_s * 3600) * usd_per_hour, 4)
