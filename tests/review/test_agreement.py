"""Reviewer agreement on answers built by hand."""

from stages.review.agreement import agreement


def answer(user, status="submitted", *spans):
    return {"user_id": user, "status": status, "value": [{"start": a, "end": b} for a, b in spans]}


def test_agreement_between_reviewers_and_against_the_adjudicated_label():
    apple, apple_inc, dow = (0, 5), (0, 9), (14, 17)
    reviewed = [
        # both mark Apple; u2 adds Dow: exact 1 of 2 spans, overlap the same
        ([answer("u1", "submitted", apple), answer("u2", "submitted", apple, dow)], [{"start": 0, "end": 5}]),
        # boundaries differ: no exact match, but they overlap
        ([answer("u1", "submitted", apple), answer("u2", "submitted", apple_inc)], [{"start": 0, "end": 5}]),
        # both say no company: identical, though F1 has nothing to count
        ([answer("u1"), answer("u2")], []),
        # a discard against a submission: no spans to compare
        ([answer("u1", "discarded"), answer("u2", "submitted", apple)], []),
        # one reviewer, and a draft: not a pair
        ([answer("u1", "submitted", apple), answer("u2", "draft")], [{"start": 0, "end": 5}]),
    ]
    figures = agreement(reviewed)
    assert figures["records_with_several_reviewers"] == 4 and figures["discarded_by_some_only"] == 1
    assert figures["pairs"] == 3 and figures["pairs_identical"] == 0.3333
    # u1 as one side: 2 spans, u2: 3 spans; exact matches 1 -> P 1/3, R 1/2 -> F1 0.4
    assert figures["exact_f1"] == 0.4
    # overlap: u2's Apple, Apple Inc overlap u1's (2 of 3), u1's both overlap (2 of 2) -> F1 0.8
    assert figures["overlap_f1"] == 0.8
    assert figures["reviewer_vs_adjudicated"] == {
        "u1": {"records": 3, "exact_f1": 1.0, "overlap_f1": 1.0},
        # u2's 4 spans against 2 adjudicated: 1 exact (P 1/4, R 1/2), 2 overlapping (P 2/4, R 2/2)
        "u2": {"records": 4, "exact_f1": 0.3333, "overlap_f1": 0.6667},
    }
    assert agreement([([answer("u1", "submitted", apple)], [])])["pairs_identical"] is None


def test_a_snapshot_gives_each_decided_headline_its_label_and_a_discard_none():
    from stages.review.responses import submitted_labels

    snapshot = [
        {"id": "a", "responses": [answer("u1", "submitted", (0, 5))]},
        {"id": "b", "responses": [answer("u1", "discarded")]},
        {"id": "c", "responses": [answer("u1", "draft", (0, 5))]},  # work in progress: no decision
        {"id": "elsewhere", "responses": [answer("u1", "submitted", (0, 1))]},  # not among the texts asked for
    ]
    texts = {"a": "Apple Up", "b": "Gold Up", "c": "Visa Up"}
    assert submitted_labels(snapshot, texts) == {"a": [{"start": 0, "end": 5, "text": "Apple"}], "b": None}
