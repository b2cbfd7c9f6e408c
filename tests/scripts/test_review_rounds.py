"""The review-order simulation: what a round reveals, its summary and goal, and a real tiny run of every policy
through the pipeline's own scout, calibration, auto-accept and queue."""

import json

import polars as pl
import pytest
import yaml

from scripts import review_rounds
from tests.helpers import experiment_run


def test_a_review_state_reveals_human_labels_of_reviewed_train_headlines_only(tmp_path, labelled_headlines):
    splits = experiment_run(tmp_path, labelled_headlines, 0.5).splits()
    train = splits["train"].with_columns(valid=pl.col("id") != splits["train"]["id"][1])  # one invalid answer
    reviewed = set(train["id"][:1])
    state = review_rounds.review_state({**splits, "train": train}, reviewed)
    rows = {r["id"]: r for r in state["train"].iter_rows(named=True)}
    first, second, third = train["id"][:3]
    assert (
        rows[first]["label_source"] == "human" and rows[first]["label_spans"] == train.row(0, named=True)["label_spans"]
    )
    assert rows[second]["label_source"] == "none"  # unreviewed, and its teacher answer invalid
    assert rows[third]["label_source"] == "llm" and rows[third]["label_spans"] == rows[third]["teacher_spans"]
    assert state["test"].drop("reviewed").equals(splits["test"]) and state["test"]["reviewed"].all()  # reviewed whole


def row(policy, seed, reviews, f1, accepted=0, **evidence):
    return {
        "policy": policy,
        "seed": seed,
        "reviews": reviews,
        "f1": f1,
        "accepted": accepted,
        "precision": f1,
    } | evidence


def test_the_summary_pairs_seeds_against_random_and_the_goal_says_met_or_by_how_much():
    rows = []
    for seed, shift in enumerate((0.0, 0.01, -0.01)):
        supported = {"supported_span_precision": 0.9 + shift, "supported_no_other_precision": 0.95}
        rows += [row("random", seed, 300, 0.76 + shift), row("rounds", seed, 300, 0.80 + shift, 40, **supported)]
        rows += [row("rounds", seed, 600, 0.84 + shift), row("everything", seed, 1200, 0.85 + shift)]
    rows = [r | {"recall": r["f1"], "f1_ci_low": r["f1"] - 0.05, "f1_ci_high": r["f1"] + 0.05} for r in rows]
    policies = review_rounds.summary(rows)
    assert policies["rounds"]["300"]["gain_over_random"] == {"mean": 0.04, "min": 0.04, "max": 0.04}
    assert policies["rounds"]["300"]["accepted_mean"] == 40 and "gain_over_random" not in policies["rounds"]["600"]
    assert policies["rounds"]["300"]["supported_span_precision_mean"] == 0.9  # over seeds; absent where not all have it
    assert (
        "span_ece_raw_mean" not in policies["rounds"]["300"]
        and "supported_span_precision_mean" not in policies["random"]["300"]
    )
    result = {"policies": policies, "train_headlines": 1200}
    result["everything_range"] = review_rounds.seeds_range([r["f1"] for r in rows if r["policy"] == "everything"])
    assert result["everything_range"] == (0.8252, 0.8748)  # 0.85 +- 4.303 x 0.01 / sqrt(3)
    assert review_rounds.goal(result) == "met (rounds at 600 reviews: 0.840)"
    result["everything_range"] = (0.845, 0.855)
    assert review_rounds.goal(result) == "missed by 0.005 (rounds at 600 reviews: 0.840)"


def test_the_docs_table_is_the_committed_run():
    result = json.loads((review_rounds.ROOT / "metrics/review_rounds.json").read_text())
    assert len(result["seeds"]) >= 3 and result["goal"].startswith(("met", "missed by"))
    table = review_rounds.markdown_table(result)
    for doc in ("README.md", "docs/review.md"):
        assert table in (review_rounds.ROOT / doc).read_text(), f"{doc}: rerun python -m scripts.review_rounds --table"


@pytest.mark.slow
def test_every_policy_runs_on_a_tiny_run_and_rounds_learn_from_the_first(tmp_path, labelled_headlines):
    run = experiment_run(tmp_path, labelled_headlines, 0.5, tiny=True)
    params = yaml.safe_load((run.root / "params.yaml").read_text())
    params["scout"].update(folds=2, epochs=1)  # quick scouts: three of them train here
    (run.root / "params.yaml").write_text(yaml.safe_dump(params))
    run.paths["split"].mkdir(parents=True, exist_ok=True)
    for name, frame in run.splits().items():  # the scout's columns, as llm_label and split write them
        frame.select("id", "text", "valid", "teacher_spans").with_columns(
            hallucinated=pl.lit(False), agreement=pl.lit(None, pl.Float64)
        ).write_parquet(run.paths["split"] / f"{name}.parquet")
    simulation = review_rounds.Simulation(run, batch=5)
    rows = simulation.policy_rows(0, [5, 10], list(review_rounds.POLICIES))
    assert [(r["policy"], r["reviews"]) for r in rows] == [
        ("random", 5),
        ("random", 10),
        ("one_shot", 5),
        ("one_shot", 10),
        ("rounds", 5),
        ("rounds", 10),
        ("everything", 20),
    ]
    assert all(0 <= r["f1"] <= 1 for r in rows)
    # the rounds say what their calibration let auto-accept promise; the other policies accept nothing
    assert all(0 <= r["supported_span_precision"] <= 1 for r in rows if r["policy"] == "rounds")
    assert not any("supported_span_precision" in r for r in rows if r["policy"] != "rounds")
    # the second round's scout learned from the first round's five reviews
    kept = sorted(p.name for p in (run.root / "experiments").glob("review-rounds-scout-*"))
    assert [name.rsplit("-", 1)[0] for name in kept] == [
        "review-rounds-scout-0-seed0",
        "review-rounds-scout-10-seed0",
        "review-rounds-scout-5-seed0",
    ]
