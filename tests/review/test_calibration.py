"""Calibration's pieces on numbers worked by hand: isotonic fit, cross-fitting, reliability and ECE, and the
precision threshold auto-accept takes."""

import math

import pytest

from stages.review import calibration


def test_isotonic_pools_adjacent_violators_and_maps_every_score():
    # 0.1: 0 of 1, 0.2: 1 of 1, 0.3: 0 of 1 (violates, pooled with 0.2 -> 0.5), 0.9: 1 of 2
    fitted = calibration.fit_isotonic([0.1, 0.2, 0.3, 0.9, 0.9], [False, True, False, True, False])
    assert fitted.uppers == (0.1, 0.9) and fitted.values == (0.0, 0.5)  # 0.5 == 0.5 pools too
    assert [fitted(s) for s in (0.0, 0.1, 0.15, 0.3, 0.95)] == [0.0, 0.0, 0.5, 0.5, 0.5]
    rising = calibration.fit_isotonic([0.1, 0.5, 0.9], [False, False, True])
    assert [rising(s) for s in (0.1, 0.5, 0.9)] == [0.0, 0.0, 1.0]


def test_cross_fitting_never_calibrates_an_item_with_its_own_headlines_labels():
    groups = [f"h{i}" for i in range(40)]
    scores = [0.5] * 40  # one score for all: each item gets the positive share of the OTHER folds
    outcomes = [i % 2 == 0 for i in range(40)]
    calibrated = calibration.cross_fitted(groups, scores, outcomes, folds=4, seed=0)
    for held_out in range(4):
        others = [o for g, o in zip(groups, outcomes) if calibration.fold_of(g, 4, 0) != held_out]
        expected = sum(others) / len(others)
        mine = [c for g, c in zip(groups, calibrated) if calibration.fold_of(g, 4, 0) == held_out]
        assert mine and all(c == pytest.approx(expected) for c in mine)
    alone = calibration.cross_fitted(["a", "a"], [0.2, 0.8], [True, False], folds=2, seed=0)
    assert all(math.isnan(c) for c in alone)  # one headline: no other fold to fit on


def test_ece_is_zero_when_each_bins_prediction_is_its_observed_share_and_grows_with_the_gap():
    probabilities = [0.25] * 4 + [0.75] * 4
    outcomes = [True, False, False, False, True, True, True, False]
    assert calibration.expected_calibration_error(probabilities, outcomes) == 0.0
    overconfident = calibration.expected_calibration_error([0.95] * 4, [True, True, False, False])
    assert overconfident == pytest.approx(0.45)
    rows = calibration.reliability(probabilities, outcomes)
    assert [(r["bin"], r["count"], r["observed"]) for r in rows] == [(2, 4, 0.25), (7, 4, 0.75)]


def test_the_accept_threshold_needs_the_lower_bound_of_precision_not_the_point_estimate():
    assert calibration.wilson_lower(10, 10) == pytest.approx(0.7225, abs=1e-4)
    # 10 of 10 right is a precision of 1.0, but not enough evidence for 0.98
    assert calibration.accept_threshold([0.9] * 10, [True] * 10, 0.98) is None
    # 300 right above 0.8, then wrong ones below: the threshold stops where the bound falls under the target
    scores = [0.8 + i / 10_000 for i in range(300)] + [0.5] * 20
    outcomes = [True] * 300 + [False] * 20
    assert calibration.accept_threshold(scores, outcomes, 0.98) == 0.8
    # all 320 hold 300 right (0.94, lower bound 0.905): enough for a 0.9 target, not for 0.95
    assert calibration.accept_threshold(scores, outcomes, 0.9) == 0.5
    assert calibration.accept_threshold(scores, outcomes, 0.95) == 0.8


def test_teacher_spans_take_the_other_models_score_of_the_same_offsets_and_misses_its_best_other_span():
    def span(start: int, end: int, score: float | None = None) -> dict:
        return {"start": start, "end": end} | ({} if score is None else {"score": score})

    teacher = [span(0, 5), span(10, 15)]
    scored = [span(0, 5, 0.9), span(10, 13, 0.7), span(20, 25, 0.4), span(30, 34, 0.6)]
    assert calibration.teacher_span_scores(teacher, scored) == [0.9, 0.0]  # (10, 13) is not (10, 15)
    assert calibration.missed_score(teacher, scored) == 0.6  # (10, 13) overlaps a teacher span: not a miss
    assert calibration.missed_score(teacher, scored[:2]) == 0.0


def test_the_supported_precision_is_the_best_bound_any_threshold_meets():
    # 200 right at 0.9 (bound 0.981), then 20 wrong at 0.3 (200 of 220: bound 0.867)
    scores, outcomes = [0.9] * 200 + [0.3] * 20, [True] * 200 + [False] * 20
    assert calibration.supported_precision(scores, outcomes) == 0.9812
    assert calibration.accept_threshold(scores, outcomes, 0.981) == 0.9
    assert calibration.accept_threshold(scores, outcomes, 0.99) is None
    assert calibration.supported_precision([], []) == 0.0
