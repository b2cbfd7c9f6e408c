"""scout: cross-fitting never scores a headline with a model that trained on it; the priority table is
deterministic and ranks teacher mistakes first."""

import polars as pl

from scripts.review_priority import reviewed_ids, summary, training_records
from stages.core.schema import SPANS
from stages.review.calibration import fold_of
from stages.review.scouting import cross_fit, priorities

WEIGHTS = {"disagreement": 1.0, "invalid": 1.0, "low_agreement": 0.5, "dropped_mentions": 0.5}


def records(n=30):
    return [{"id": f"h{i:02d}", "text": f"Company{i} Up", "spans": [], "valid": i % 7 != 0} for i in range(n)]


def test_cross_fitting_never_scores_a_headline_with_a_model_that_trained_on_it():
    trained_on, scored_by = [], {}

    def fit_predict(train, texts):
        trained_on.append({r["text"] for r in train})
        for text in texts:
            scored_by[text] = len(trained_on) - 1
        return [[] for _ in texts]

    data = records()
    predicted = cross_fit(data, folds=3, seed=0, fit_predict=fit_predict, trainable=lambda r: r["valid"])
    assert set(predicted) == {r["id"] for r in data} and len(trained_on) == 3
    for record in data:
        assert record["text"] not in trained_on[scored_by[record["text"]]]
    assert not any(r["text"] in seen for r in data if not r["valid"] for seen in trained_on)
    assert {fold_of(r["id"], 3, 0) for r in data} == {0, 1, 2} and fold_of("h01", 3, 0) == fold_of("h01", 3, 0)


def rows():
    apple = [{"start": 0, "end": 5, "text": "Apple"}]
    return [
        {
            "id": "agree",
            "split": "train",
            "text": "Apple Up",
            "valid": True,
            "teacher_spans": apple,
            "hallucinated": [],
            "agreement": None,
        },
        {
            "id": "disagree",
            "split": "train",
            "text": "Apple Up",
            "valid": True,
            "teacher_spans": [],
            "hallucinated": [],
            "agreement": None,
        },
        {
            "id": "invalid",
            "split": "test",
            "text": "Apple Up",
            "valid": False,
            "teacher_spans": [],
            "hallucinated": [],
            "agreement": None,
        },
        {
            "id": "shaky",
            "split": "valid",
            "text": "Apple Up",
            "valid": True,
            "teacher_spans": apple,
            "hallucinated": ["AAPL"],
            "agreement": 0.6,
        },
        {
            "id": "empty",
            "split": "valid",
            "text": "Gold Up",
            "valid": True,
            "teacher_spans": [],
            "hallucinated": [],
            "agreement": None,
        },
    ]


def test_disagreement_and_teacher_signals_rank_first_and_the_table_is_deterministic():
    apple = [{"start": 0, "end": 5, "text": "Apple", "score": 0.9}]
    scout = {"agree": apple, "disagree": apple, "invalid": apple, "shaky": apple, "empty": []}
    table = priorities(rows(), scout, WEIGHTS, seed=0)
    order = table.sort("rank")["id"].to_list()
    assert order[:2] == ["invalid", "disagree"] and order[2] == "shaky" and set(order[3:]) == {"agree", "empty"}
    assert table.filter(pl.col("id") == "invalid")["priority"][0] == 2.0  # disagrees and is invalid
    assert table.filter(pl.col("id") == "shaky")["priority"][0] == 0.7  # 0.5 * (1 - 0.6) + 0.5
    assert priorities(list(reversed(rows())), scout, WEIGHTS, seed=0).sort("id").equals(table.sort("id"))


def test_the_scout_scores_each_teacher_span_and_its_best_miss_below_its_own_threshold_too():
    """A scout that gives the teacher's Apple 0.3 does not predict it (disagreement 1) but scores it for
    calibration; its 0.2 for another span is the headline's missed score."""
    shaky_apple = {"start": 0, "end": 5, "text": "Apple", "score": 0.3}
    other = {"start": 6, "end": 8, "text": "Up", "score": 0.2}
    table = priorities(rows(), {"shaky": [shaky_apple, other]}, WEIGHTS, seed=0)
    shaky = table.filter(pl.col("id") == "shaky").row(0, named=True)
    assert shaky["scout_spans"] == [] and shaky["disagreement"] == 1.0
    assert shaky["teacher_span_scores"] == [0.3] and shaky["missed_score"] == 0.2
    empty = table.filter(pl.col("id") == "empty").row(0, named=True)
    assert empty["teacher_span_scores"] == [] and empty["missed_score"] == 0.0


def test_review_priority_experiment_reviews_top_k_or_random_k_and_keeps_or_drops_the_rest():
    human, teacher = [{"start": 0, "end": 4, "text": "Visa"}], []
    train = pl.DataFrame(
        {
            "id": [f"h{i}" for i in range(6)],
            "text": ["Visa Up"] * 6,
            "valid": [True] * 5 + [False],
            "label_source": ["human"] * 6,
            "label_spans": [human] * 6,
            "teacher_spans": [teacher] * 6,
        },
        schema_overrides={"label_spans": SPANS, "teacher_spans": SPANS},
    )
    priority = pl.DataFrame({"id": [f"h{i}" for i in range(6)], "rank": [6, 5, 4, 3, 2, 1]})
    assert reviewed_ids(train, priority, "priority", 2, seed=7) == {"h5", "h4"}
    random_pick = reviewed_ids(train, priority, "random", 2, seed=0)
    assert len(random_pick) == 2 and random_pick == reviewed_ids(train, priority, "random", 2, seed=0)
    keep = training_records(train, {"h5", "h4"}, "keep")
    assert [(r["id"], r["label_source"], r["spans"]) for r in keep] == [
        ("h0", "llm", []),
        ("h1", "llm", []),
        ("h2", "llm", []),
        ("h3", "llm", []),
        ("h4", "human", human),
        ("h5", "human", human),
    ]  # h5's teacher answer was invalid, but it is reviewed
    assert [r["id"] for r in training_records(train, {"h5", "h4"}, "drop")] == ["h4", "h5"]
    rows = [
        {"strategy": s, "k": 2, "unreviewed": u, "f1": f}
        for s, u, f in [
            ("priority", "keep", 0.5),
            ("priority", "drop", 0.7),
            ("random", "keep", 0.6),
            ("random", "drop", 0.4),
        ]
    ]
    result = summary(rows, [2])
    assert (result["priority_f1"], result["random_f1"], result["priority_rule"]) == ([0.7], [0.6], ["drop"])


def test_a_scout_learns_the_human_label_where_there_is_one_and_nothing_from_a_discard():
    from stages.review.scouting import scout_records

    apple = [{"start": 0, "end": 5, "text": "Apple"}]
    rows = [
        {"id": "t", "text": "Apple Up", "teacher_spans": [], "valid": True},
        {"id": "h", "text": "Apple Up", "teacher_spans": [], "valid": True},
        {"id": "d", "text": "Apple Up", "teacher_spans": apple, "valid": True},
        {"id": "i", "text": "Apple Up", "teacher_spans": None, "valid": False},
    ]
    records = {r["id"]: r for r in scout_records(rows, {"h": apple, "d": None})}
    assert (records["t"]["spans"], records["t"]["valid"]) == ([], True)  # the teacher's answer
    assert (records["h"]["spans"], records["h"]["valid"]) == (apple, True)  # the reviewer's, over the teacher's
    assert not records["d"]["valid"] and not records["i"]["valid"]  # discarded; an invalid answer
