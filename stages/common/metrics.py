"""Entity-level scores on exact character spans: the one definition used by training and evaluation."""
from __future__ import annotations

from collections.abc import Iterable

from stages.common.schema import span_tuples


def entity_scores(gold: Iterable[list[dict] | None], predicted: Iterable[list[dict] | None]) -> dict:
    tp = fp = fn = 0
    for gold_spans, predicted_spans in zip(gold, predicted, strict=True):
        g, p = span_tuples(gold_spans), span_tuples(predicted_spans)
        tp += len(g & p)
        fp += len(p - g)
        fn += len(g - p)
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": round(precision, 4), "recall": round(recall, 4), "f1": round(f1, 4),
            "tp": tp, "fp": fp, "fn": fn}
