"""Auto-accept: which teacher labels are right often enough to train on unseen, and how well that held.

The scout (stages/scout.py: cross-fitted, trained on the teacher's labels overruled by the train reviews so far)
judges a teacher label twice: per span, its score for that span; per headline, 1 - the score of its best span the
teacher did not mark (the "no other company" score). On human-labelled headlines each has an outcome: the span is in
the human label; the human label has no span outside the teacher's. The rule takes, per kind, the lowest score at
which the items scoring at least that were right often enough that the Wilson 95% lower bound of their precision
meets the target. A headline with a valid teacher answer is accepted when every span meets the span threshold and
its no-other-company score the headline threshold: then, to that precision, its teacher label is the human one.

Pure functions on typed values; argilla_review fits the rule on its human labels and applies it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from stages.review.calibration import (
    accept_threshold,
    cross_fitted,
    expected_calibration_error,
    fold_of,
    reliability,
    supported_precision,
)

Span = tuple[int, int]


@dataclass(frozen=True)
class JudgedLabel:
    """A headline's teacher label with the scout's scores, and its human label where it has one."""

    id: str
    valid: bool
    teacher: tuple[Span, ...]
    span_scores: tuple[float, ...]  # the scout's score of each teacher span, in order (0.0: not considered)
    no_other: float  # 1 - the scout's best score of a span overlapping no teacher span
    agreement: float | None = None  # the teacher's self-consistency vote share (None: one sample)
    human: tuple[Span, ...] | None = None

    def span_outcomes(self) -> list[bool]:
        assert self.human is not None  # outcomes exist for human-labelled headlines only
        return [span in self.human for span in self.teacher]

    def nothing_missed(self) -> bool:
        """No human span lies outside the teacher's spans (a span that overlaps one but differs is a wrong span,
        which span_outcomes counts)."""
        assert self.human is not None
        return not any(not any(s < e2 and s2 < e for s2, e2 in self.teacher) for s, e in self.human)

    def exactly_right(self) -> bool:
        return set(self.teacher) == set(self.human or ())


@dataclass(frozen=True)
class AcceptRule:
    """Per-kind thresholds; None: the human labels do not support that precision at any score (nothing passes)."""

    span_threshold: float | None
    no_other_threshold: float | None

    def accepts(self, label: JudgedLabel) -> bool:
        if not label.valid or self.span_threshold is None or self.no_other_threshold is None:
            return False
        return label.no_other >= self.no_other_threshold and all(s >= self.span_threshold for s in label.span_scores)


def evidence(human_labelled: Sequence[JudgedLabel]) -> dict[str, tuple[list[float], list[bool]]]:
    """Per kind (span, no_other_company), the scores and outcomes of the valid human-labelled headlines."""
    usable = [label for label in human_labelled if label.valid and label.human is not None]
    return {
        "span": (
            [s for label in usable for s in label.span_scores],
            [o for label in usable for o in label.span_outcomes()],
        ),
        "no_other_company": ([label.no_other for label in usable], [label.nothing_missed() for label in usable]),
    }


def fit_rule(human_labelled: Sequence[JudgedLabel], target: float) -> AcceptRule:
    """The rule the valid human-labelled headlines support at `target` precision."""
    found = evidence(human_labelled)
    return AcceptRule(accept_threshold(*found["span"], target), accept_threshold(*found["no_other_company"], target))


def supported(human_labelled: Sequence[JudgedLabel]) -> dict[str, float]:
    """Per kind, the highest precision target the labels support at any threshold (accept_precision above it
    accepts nothing)."""
    return {kind: supported_precision(*items) for kind, items in evidence(human_labelled).items()}


def acceptance(decided: Sequence[tuple[JudgedLabel, bool]]) -> dict:
    """How accepting held on human-labelled headlines (label, accepted?): the share accepted, and the accepted
    spans' precision and headlines' exactness against the human labels."""
    accepted = [label for label, yes in decided if yes]
    spans = [o for label in accepted for o in label.span_outcomes()]
    return {
        "headlines": len(decided),
        "accepted": len(accepted),
        "accepted_share": round(len(accepted) / len(decided), 4) if decided else None,
        "accepted_spans": len(spans),
        "accepted_span_precision": round(sum(spans) / len(spans), 4) if spans else None,
        "accepted_exactly_right": round(sum(label.exactly_right() for label in accepted) / len(accepted), 4)
        if accepted
        else None,
    }


def cross_fitted_acceptance(labels: Sequence[JudgedLabel], target: float, folds: int, seed: int) -> dict:
    """acceptance() with every headline decided by a rule fitted on the other folds' headlines only."""
    fold = {label.id: fold_of(label.id, folds, seed) for label in labels}
    decided = []
    for held_out in range(folds):
        rule = fit_rule([label for label in labels if fold[label.id] != held_out], target)
        decided += [(label, rule.accepts(label)) for label in labels if fold[label.id] == held_out]
    return acceptance(sorted(decided, key=lambda pair: pair[0].id))


# Each source of confidence: the items it scores on a human-labelled headline, as (score, outcome) pairs.
SOURCES: dict[str, Callable[[JudgedLabel], list[tuple[float, bool]]]] = {
    "scout_span": lambda label: list(zip(label.span_scores, label.span_outcomes())),
    "no_other_company": lambda label: [(label.no_other, label.nothing_missed())],
    "teacher_agreement": lambda label: [] if label.agreement is None else [(label.agreement, label.exactly_right())],
}


def calibration_report(
    human_labelled: Sequence[JudgedLabel], folds: int, seed: int, bins: int = 10
) -> tuple[dict, dict[str, list[dict]]]:
    """Per source with any item: the raw score's ECE, the ECE of its isotonic calibration cross-fitted by headline,
    and the calibrated reliability bins (the plot's points)."""
    summary, curves = {}, {}
    for name, items_of in SOURCES.items():
        groups, scores, outcomes = [], [], []
        for label in human_labelled:
            if label.valid:
                for score, outcome in items_of(label):
                    groups.append(label.id)
                    scores.append(score)
                    outcomes.append(outcome)
        if not scores:
            continue
        calibrated = cross_fitted(groups, scores, outcomes, folds, seed)
        kept = [(p, o) for p, o in zip(calibrated, outcomes) if not math.isnan(p)]
        summary[name] = {
            "items": len(scores),
            "observed_share": round(sum(outcomes) / len(outcomes), 4),
            "ece_raw": expected_calibration_error(scores, outcomes, bins),
            "ece_calibrated": expected_calibration_error([p for p, _ in kept], [o for _, o in kept], bins)
            if kept
            else None,
        }
        curves[name] = reliability([p for p, _ in kept], [o for _, o in kept], bins)
    return summary, curves
