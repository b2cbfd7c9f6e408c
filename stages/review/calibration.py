"""Calibrated confidence: how often a score's spans are right, learned from human labels.

A score (the scout's probability for a teacher span, the teacher's self-consistency vote share, a student's
probability) is mapped to the share of such spans humans kept, by isotonic regression (pool adjacent violators: the
map only rises with the score, and makes no assumption about its shape). Fitted and measured cross-fitted: every
item is calibrated by a map fitted on the other folds' headlines, so no span is scored by a fit that saw its label.

Pure functions on floats; the stages that own the scores and the labels call them.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from stages.core.schema import seeded_rank


@dataclass(frozen=True)
class Calibrator:
    """A non-decreasing step map from score to probability: scores up to uppers[i] (and above uppers[i - 1]) map
    to values[i]; a score above the last upper maps to the last value."""

    uppers: tuple[float, ...]
    values: tuple[float, ...]

    def __call__(self, score: float) -> float:
        return self.values[min(bisect.bisect_left(self.uppers, score), len(self.values) - 1)]


def fit_isotonic(scores: Sequence[float], outcomes: Sequence[bool]) -> Calibrator:
    """The isotonic (least-squares, non-decreasing) map of outcomes on scores; equal scores share one value."""
    if not scores:
        raise ValueError("calibration needs at least one scored item")
    blocks: list[list[float]] = []  # [upper score, positives, count], rising
    for score, outcome in sorted(zip(scores, outcomes)):
        if blocks and blocks[-1][0] == score:
            blocks[-1][1] += outcome
            blocks[-1][2] += 1
        else:
            blocks.append([score, float(outcome), 1.0])
        while len(blocks) > 1 and blocks[-2][1] / blocks[-2][2] >= blocks[-1][1] / blocks[-1][2]:
            upper, positives, count = blocks.pop()
            blocks[-1] = [upper, blocks[-1][1] + positives, blocks[-1][2] + count]
    return Calibrator(tuple(b[0] for b in blocks), tuple(b[1] / b[2] for b in blocks))


def fold_of(group: str, folds: int, seed: int) -> int:
    return int(seeded_rank(seed, group)[:8], 16) % folds


def cross_fitted(
    groups: Sequence[str],
    scores: Sequence[float],
    outcomes: Sequence[bool],
    folds: int,
    seed: int,
    fit: Callable[[Sequence[float], Sequence[bool]], Calibrator] = fit_isotonic,
) -> list[float]:
    """Each item's calibrated probability from a map fitted on the items of the other folds' groups (a group is a
    headline: its spans stay together). An item whose fold leaves nothing to fit on gets NaN."""
    fold = [fold_of(g, folds, seed) for g in groups]
    calibrated = [math.nan] * len(scores)
    for held_out in range(folds):
        others = [i for i, f in enumerate(fold) if f != held_out]
        if not others:
            continue
        calibrator = fit([scores[i] for i in others], [outcomes[i] for i in others])
        for i, f in enumerate(fold):
            if f == held_out:
                calibrated[i] = calibrator(scores[i])
    return calibrated


def binned(probabilities: Sequence[float], outcomes: Sequence[bool], bins: int) -> dict[int, list[float]]:
    """Equal-width bins of predicted probability: [count, sum of predictions, sum of outcomes] per non-empty bin."""
    table: dict[int, list[float]] = {}
    for p, outcome in zip(probabilities, outcomes):
        row = table.setdefault(min(int(p * bins), bins - 1), [0.0, 0.0, 0.0])
        row[0] += 1
        row[1] += p
        row[2] += outcome
    return table


def reliability(probabilities: Sequence[float], outcomes: Sequence[bool], bins: int = 10) -> list[dict]:
    """Count, mean prediction and observed share per non-empty bin (the points of a reliability plot)."""
    return [
        {
            "bin": b,
            "low": b / bins,
            "high": (b + 1) / bins,
            "count": int(count),
            "mean_probability": round(total / count, 4),
            "observed": round(hits / count, 4),
        }
        for b, (count, total, hits) in sorted(binned(probabilities, outcomes, bins).items())
    ]


def expected_calibration_error(probabilities: Sequence[float], outcomes: Sequence[bool], bins: int = 10) -> float:
    """The count-weighted mean gap between predicted and observed share over the bins (of the unrounded sums)."""
    table = binned(probabilities, outcomes, bins)
    return round(sum(abs(total - hits) for _, total, hits in table.values()) / len(probabilities), 4)


def wilson_lower(successes: float, trials: float, z: float = 1.96) -> float:
    """The lower bound of the Wilson score interval of a proportion (95% two-sided at z = 1.96)."""
    if trials == 0:
        return 0.0
    share = successes / trials
    centre = share + z * z / (2 * trials)
    margin = z * math.sqrt(share * (1 - share) / trials + z * z / (4 * trials * trials))
    return (centre - margin) / (1 + z * z / trials)


def precision_bounds(scores: Sequence[float], outcomes: Sequence[bool]) -> list[tuple[float, float]]:
    """(t, the Wilson 95% lower bound of the precision of the items scoring at least t) for every distinct score t,
    highest first."""
    ranked = sorted(zip(scores, outcomes), reverse=True)
    bounds, hits = [], 0.0
    for count, (score, outcome) in enumerate(ranked, start=1):
        hits += outcome
        if count == len(ranked) or ranked[count][0] != score:  # the last of a tie: t takes all its items
            bounds.append((score, wilson_lower(hits, count)))
    return bounds


def accept_threshold(scores: Sequence[float], outcomes: Sequence[bool], target: float) -> float | None:
    """The lowest score t at which the items scoring at least t were right often enough that the lower 95% bound
    of their precision meets `target`; None when no t does (nothing may be accepted unseen)."""
    return min((t for t, bound in precision_bounds(scores, outcomes) if bound >= target), default=None)


def supported_precision(scores: Sequence[float], outcomes: Sequence[bool]) -> float:
    """The highest precision target any threshold meets: what accept_precision could be with these labels."""
    return round(max((bound for _, bound in precision_bounds(scores, outcomes)), default=0.0), 4)


def teacher_span_scores(teacher: Sequence[dict], scored: Sequence[dict]) -> list[float]:
    """Per teacher span, the score another model gave the same span (start and end), 0.0 where it did not predict
    it (below its decode threshold, or beaten by an overlapping span in its greedy decode)."""
    by_offsets = {(s["start"], s["end"]): s["score"] for s in scored}
    return [float(by_offsets.get((t["start"], t["end"]), 0.0)) for t in teacher]


def missed_score(teacher: Sequence[dict], scored: Sequence[dict]) -> float:
    """The highest score the other model gave a span that overlaps no teacher span (0.0 when none): how strongly it
    says the teacher missed a company in this headline."""
    return max(
        (s["score"] for s in scored if not any(s["start"] < t["end"] and t["start"] < s["end"] for t in teacher)),
        default=0.0,
    )
