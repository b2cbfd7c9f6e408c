"""The next round's order on labels built by hand: calibrated expected errors once there are enough human labels,
the scout's priority before, and the queue argilla_review writes from its tables."""

import polars as pl

from stages.core.stage_params import ReviewParams
from stages.review.accept import JudgedLabel
from stages.review.calibration import Calibrator
from stages.review.rounds import (
    MIN_CALIBRATION_HEADLINES,
    Calibrations,
    expected_errors,
    fit_calibrations,
    label_confidence,
    next_batch,
)
from stages.review.tables import review_queue
from tests.helpers import shipped_params


def label(id_, score=0.9, no_other=0.9, valid=True, human=None):
    return JudgedLabel(id_, valid, ((0, 5),), (score,), no_other, human=human)


# spans scored up to 0.5 are right 40% of the time, above it 90%; the teacher misses nothing 80% of the time
# up to a no-other score of 0.5, always above it
CALIBRATED = Calibrations(span=Calibrator((0.5, 1.0), (0.4, 0.9)), no_other=Calibrator((0.5, 1.0), (0.8, 1.0)))


def test_expected_errors_and_confidence_add_up_the_calibrated_chances_of_each_mistake():
    assert expected_errors(label("a", 0.9, 0.9), CALIBRATED) == 0.1  # 1 - 0.9 for the span, 0 missed
    assert expected_errors(label("b", 0.2, 0.2), CALIBRATED) == 0.8  # 0.6 + 0.2
    assert expected_errors(label("c", 0.2, 0.2, valid=False), CALIBRATED) == 1.8  # an invalid answer: one more
    assert label_confidence(label("a", 0.9, 0.9), CALIBRATED) == 0.9
    assert label_confidence(label("b", 0.2, 0.2), CALIBRATED) == 0.32  # 0.4 x 0.8


def test_calibrations_wait_for_enough_human_labels():
    right = [label(f"h{i}", human=((0, 5),)) for i in range(MIN_CALIBRATION_HEADLINES)]
    assert fit_calibrations(right[:-1]) is None
    fitted = fit_calibrations(right)
    assert fitted is not None and fitted.span(0.9) == 1.0 and fitted.no_other(0.9) == 1.0
    assert fit_calibrations([label(f"u{i}") for i in range(50)]) is None  # no human label at all


def test_the_batch_follows_expected_errors_once_calibrated_and_the_priority_before():
    waiting = [label("sure", 0.9, 0.9), label("doubtful", 0.2, 0.2), label("middling", 0.9, 0.2)]
    priority = {"sure": 3.0, "doubtful": 1.0, "middling": 2.0}  # the scout's order disagrees with the calibration
    assert next_batch(waiting, priority, None, 2, seed=0) == ["sure", "middling"]
    assert next_batch(waiting, priority, CALIBRATED, 2, seed=0) == ["doubtful", "middling"]
    assert next_batch(waiting, priority, CALIBRATED, 10, seed=0) == ["doubtful", "middling", "sure"]
    tied = [label(f"t{i}") for i in range(6)]
    assert next_batch(tied, {}, None, 6, seed=0) != next_batch(tied, {}, None, 6, seed=1)  # ties: seeded order
    assert sorted(next_batch(tied, {}, None, 6, seed=0)) == [f"t{i}" for i in range(6)]


def test_the_queue_ranks_only_train_headlines_still_waiting_for_a_reviewer_an_invalid_answer_too():
    judged = {
        "train": [label("done", human=((0, 5),)), label("accepted"), label("waiting_a", 0.2), label("waiting_b")],
        "valid": [label("v", human=((0, 5),))],
        "test": [label("t")],
    }
    marked = {
        "train": pl.DataFrame(
            {"id": ["done", "accepted", "waiting_a", "waiting_b"], "label_source": ["human", "accepted", "llm", "none"]}
        )
    }
    params = ReviewParams.model_validate(shipped_params()["argilla_review"] | {"batch_size": 1})
    queue = review_queue(judged, marked, {"waiting_b": 2.0, "waiting_a": 1.0}, params)
    assert queue.filter(pl.col("batch").is_not_null()).select("id", "batch").rows() == [("waiting_b", 1)]
    assert queue["expected_errors"].is_null().all()  # one human train/valid label: too few to calibrate
    assert set(queue["split"]) == {"train", "valid", "test"} and queue.height == 6
    everything = review_queue(judged, marked, {}, params.model_copy(update={"batch_size": None}))
    assert sorted(everything.filter(pl.col("batch").is_not_null())["id"]) == ["waiting_a", "waiting_b"]
