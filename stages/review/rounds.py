"""Rounds of review: which unreviewed headlines reviewers see next, learned from the labels they gave so far.

A headline's teacher label is expected to hold sum(1 - P(span right)) wrong spans plus 1 - P(no other company)
missed ones, the probabilities from isotonic calibrations of the scout's scores fitted on the human labels so far
(stages/review/calibration.py); an invalid answer counts one more. The next batch is the `size` unreviewed headlines
not auto-accepted with the most expected errors (ties: the scout's priority, then a seeded order). Before enough
human labels to calibrate, the scout's priority alone orders them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from stages.core.schema import seeded_rank
from stages.review.accept import JudgedLabel, evidence
from stages.review.calibration import Calibrator, fit_isotonic

# Fewer human-labelled headlines than this calibrate nothing: the scout's priority orders the batch.
MIN_CALIBRATION_HEADLINES = 20


@dataclass(frozen=True)
class Calibrations:
    span: Calibrator  # the scout's span score -> P(the span is right)
    no_other: Calibrator  # 1 - its best missed score -> P(the teacher missed no company)


def fit_calibrations(human_labelled: Sequence[JudgedLabel]) -> Calibrations | None:
    """Both calibrations from the valid human-labelled headlines; None with too few of them (or no span)."""
    found = evidence(human_labelled)
    spans, headlines = found["span"], found["no_other_company"]
    if len(headlines[0]) < MIN_CALIBRATION_HEADLINES or not spans[0]:
        return None
    return Calibrations(span=fit_isotonic(*spans), no_other=fit_isotonic(*headlines))


def expected_errors(label: JudgedLabel, calibrations: Calibrations) -> float:
    wrong = sum(1.0 - calibrations.span(s) for s in label.span_scores)
    return round(wrong + 1.0 - calibrations.no_other(label.no_other) + (0.0 if label.valid else 1.0), 6)


def label_confidence(label: JudgedLabel, calibrations: Calibrations) -> float:
    """The calibrated probability that the whole teacher label is right: every span, and no company missed (as if
    independent: a reviewer's sort key, not a guarantee; auto-accept's rule is the guarantee)."""
    confidence = calibrations.no_other(label.no_other)
    for score in label.span_scores:
        confidence *= calibrations.span(score)
    return round(confidence, 6)


def next_batch(
    unreviewed: Sequence[JudgedLabel],
    priority: Mapping[str, float],
    calibrations: Calibrations | None,
    size: int,
    seed: int,
) -> list[str]:
    """The ids of the `size` headlines to review next, best first (callers leave out auto-accepted ones)."""

    def order(label: JudgedLabel) -> tuple:
        gain = expected_errors(label, calibrations) if calibrations else 0.0
        return (-gain, -priority.get(label.id, 0.0), seeded_rank(seed, label.id))

    return [label.id for label in sorted(unreviewed, key=order)[:size]]
