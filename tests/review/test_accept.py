"""Auto-accept's rule on labels built by hand: what counts as right, when the human labels support a threshold,
that cross-fitting never lets a headline's own label vouch for it, and the calibration report per source."""

from stages.review.accept import (
    AcceptRule,
    JudgedLabel,
    acceptance,
    calibration_report,
    cross_fitted_acceptance,
    fit_rule,
)
from stages.review.calibration import fold_of


def judged(id_, score=0.9, no_other=0.95, right=True, valid=True, human=True, agreement=None):
    """A one-span headline: the teacher marked [0, 5); the human agrees (right) or marked [0, 3) instead."""
    return JudgedLabel(
        id=id_,
        valid=valid,
        teacher=((0, 5),),
        span_scores=(score,),
        no_other=no_other,
        agreement=agreement,
        human=(((0, 5),) if right else ((0, 3),)) if human else None,
    )


def test_a_wrong_boundary_is_a_wrong_span_not_a_missed_company_and_a_span_elsewhere_is_a_miss():
    shifted = JudgedLabel("a", True, ((0, 5),), (0.9,), 0.9, human=((0, 3),))
    assert shifted.span_outcomes() == [False] and shifted.nothing_missed() and not shifted.exactly_right()
    missed = JudgedLabel("b", True, ((0, 5),), (0.9,), 0.9, human=((0, 5), (9, 12)))
    assert missed.span_outcomes() == [True] and not missed.nothing_missed() and not missed.exactly_right()
    empty = JudgedLabel("c", True, (), (), 0.9, human=())
    assert empty.span_outcomes() == [] and empty.nothing_missed() and empty.exactly_right()


def test_the_rule_needs_enough_right_labels_at_a_score_and_a_headline_must_pass_both_kinds():
    # 200 right spans at 0.9 (Wilson lower bound 0.981) and 20 wrong ones at 0.3
    labels = [judged(f"r{i}") for i in range(200)] + [judged(f"w{i}", 0.3, right=False) for i in range(20)]
    rule = fit_rule(labels, target=0.95)
    assert rule == AcceptRule(span_threshold=0.9, no_other_threshold=0.95)
    assert rule.accepts(judged("x", human=False))
    assert not rule.accepts(judged("x", score=0.5, human=False))  # one span below
    assert not rule.accepts(judged("x", no_other=0.5, human=False))  # may have missed a company
    assert not rule.accepts(judged("x", valid=False, human=False))  # no valid teacher answer
    # ten right labels bound precision at 0.72 only: nothing passes 0.95
    few = fit_rule(labels[:10], target=0.95)
    assert few.span_threshold is None and not few.accepts(judged("x", human=False))
    # invalid answers are no evidence
    assert fit_rule([judged(f"r{i}", valid=False) for i in range(200)], 0.95) == AcceptRule(None, None)


def test_cross_fitting_decides_each_headline_by_a_rule_its_own_fold_never_fed():
    ids = [f"h{i}" for i in range(2000)]
    fold0 = [i for i in ids if fold_of(i, 3, 0) == 0][:150]
    rest = [i for i in ids if fold_of(i, 3, 0) != 0][:6]
    labels = [judged(i) for i in fold0 + rest]
    # fitted on all, every headline passes; cross-fitted, fold 0's evidence cannot vouch for fold 0
    assert all(fit_rule(labels, 0.9).accepts(label) for label in labels)
    measured = cross_fitted_acceptance(labels, target=0.9, folds=3, seed=0)
    assert measured["headlines"] == 156 and measured["accepted"] == 6
    assert measured["accepted_span_precision"] == 1.0 and measured["accepted_exactly_right"] == 1.0


def test_acceptance_measures_accepted_spans_against_the_human_labels():
    decided = [(judged("a"), True), (judged("b", right=False), True), (judged("c"), False), (judged("d"), False)]
    assert acceptance(decided) == {
        "headlines": 4,
        "accepted": 2,
        "accepted_share": 0.5,
        "accepted_spans": 2,
        "accepted_span_precision": 0.5,
        "accepted_exactly_right": 0.5,
    }
    assert acceptance([(judged("a"), False)])["accepted_span_precision"] is None


def test_calibration_report_per_source_and_agreement_only_where_the_teacher_voted():
    labels = [judged(f"r{i}", score=0.9) for i in range(60)] + [judged(f"w{i}", 0.1, right=False) for i in range(40)]
    summary, curves = calibration_report(labels, folds=3, seed=0)
    assert set(summary) == {"scout_span", "no_other_company"} == set(curves)
    span = summary["scout_span"]
    assert span["items"] == 100 and span["observed_share"] == 0.6
    # raw scores 0.9 and 0.1 against 100% and 0% right: off by 0.1 each; calibrated they are exact
    assert span["ece_raw"] == 0.1 and span["ece_calibrated"] == 0.0
    assert [(b["count"], b["observed"]) for b in curves["scout_span"]] == [(40, 0.0), (60, 1.0)]
    voted = [judged(f"r{i}", agreement=1.0) for i in range(5)] + [judged("w", agreement=0.5, right=False)]
    assert calibration_report(voted, folds=2, seed=0)[0]["teacher_agreement"]["items"] == 6
