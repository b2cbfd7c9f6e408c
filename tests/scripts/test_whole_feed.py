"""The whole-feed recipes: who labels which train headline at a review budget, self-training's threshold and
pseudo-labels, and a real tiny run of every recipe (pretraining included, fine-tuned from its own checkpoint)."""

import json

import pytest

from scripts import whole_feed
from scripts.student_runs import ROOT, training_records
from stages.labels.records import labelled_records
from tests.helpers import experiment_run


def span(text: str, word: str, score: float | None = None) -> dict:
    start = text.index(word)
    found = {"start": start, "end": start + len(word), "text": word}
    return found if score is None else found | {"score": score}


def test_a_budget_is_seeded_nested_and_splits_train_into_human_and_teacher_labels(tmp_path, labelled_headlines):
    train = experiment_run(tmp_path, labelled_headlines, 0.5).splits()["train"]
    five, ten = whole_feed.budget_ids(train, 5, 0), whole_feed.budget_ids(train, 10, 0)
    assert len(five) == 5 and five < ten and whole_feed.budget_ids(train, 5, 1) != five
    human = training_records(train, five, "drop")
    rest = [r for r in training_records(train, five, "keep") if r["label_source"] == "llm"]
    assert {r["id"] for r in human} == five and not five & {r["id"] for r in rest}
    assert len(human) + len(rest) == train.height == len(labelled_records(train, "teacher"))
    assert {r["label_source"] for r in human} == {"human"} and {r["label_source"] for r in rest} == {"llm"}
    by_id = {row["id"]: row for row in train.iter_rows(named=True)}
    assert all(r["spans"] == by_id[r["id"]]["teacher_spans"] for r in rest)  # the teacher's, not the human's
    assert all(r["spans"] == by_id[r["id"]]["label_spans"] for r in human)


def test_self_training_takes_the_threshold_with_the_best_validation_f1_and_labels_with_it():
    text = "Apple and Intel rise"
    gold = [{"text": text, "spans": [span(text, "Apple")]}]
    scored = [[span(text, "Apple", 0.8), span(text, "Intel", 0.4)]]
    # from 0.45 up to 0.8 only Apple is kept (F1 1.0); the lowest such threshold wins the tie
    assert whole_feed.best_threshold(gold, scored) == 0.45
    rest = [{"id": "a", "text": text, "spans": [], "label_source": "llm"}]
    labelled = whole_feed.pseudo_labels(rest, scored, 0.45)
    assert labelled[0]["spans"] == [span(text, "Apple")] and labelled[0]["id"] == "a"


@pytest.mark.slow
def test_every_recipe_trains_and_scores_on_a_tiny_run(tmp_path, labelled_headlines):
    run = experiment_run(tmp_path, labelled_headlines, 0.5, tiny=True)
    rows = whole_feed.recipe_runs(run, run.splits(), 8, 0, list(whole_feed.RECIPES))
    assert [r["recipe"] for r in rows] == list(whole_feed.RECIPES)
    by_recipe = {r["recipe"]: r for r in rows}
    assert by_recipe["human"]["train_records"] == by_recipe["pretrain"]["train_records"] == 8
    assert by_recipe["keep"]["train_records"] == by_recipe["self_train"]["train_records"] == 20
    assert by_recipe["self_train"]["threshold"] in whole_feed.THRESHOLDS
    assert all(0 <= r["f1"] <= 1 and r["f1_ci_low"] <= r["f1"] <= r["f1_ci_high"] for r in rows)
    summary = whole_feed.summary(rows, list(whole_feed.RECIPES))
    assert summary["keep"]["seeds"] == 1 and summary["keep"]["f1_mean"] == by_recipe["keep"]["f1"]
    assert whole_feed.recipe_runs(run, run.splits(), 8, 0, ["keep"]) == [by_recipe["keep"]]  # kept: not retrained


def test_the_summary_gives_each_recipes_gain_over_human_labels_seed_by_seed():
    def row(recipe: str, seed: int, f1: float, **extra) -> dict:
        scores = {"f1_ci_low": f1 - 0.05, "f1_ci_high": f1 + 0.05, "precision": f1, "recall": f1}
        return {"recipe": recipe, "seed": seed, "f1": f1, "train_records": 10, **scores, **extra}

    rows = [
        row("human", 0, 0.70),
        row("human", 1, 0.80),
        row("self_train", 0, 0.75, threshold=0.3),
        row("self_train", 1, 0.79, threshold=0.5),
    ]
    summary = whole_feed.summary(rows, ["human", "self_train"])
    assert "gain_over_human" not in summary["human"]
    assert summary["self_train"]["gain_over_human"] == {"mean": 0.02, "min": -0.01, "max": 0.05}
    assert summary["self_train"]["thresholds"] == [0.3, 0.5]
    result = {
        "budget": 10,
        "seeds": [0, 1],
        "train_headlines": 40,
        "test_human_labelled": 12,
        "teacher": {"f1": 0.5},
        "recipes": summary,
    }
    table = whole_feed.markdown_table(result)
    assert (
        "| (d) self-trained: its own confident spans on the rest join | 10 human + 30 its own | 0.770 ± 0.028" in table
    )
    assert table.rstrip().endswith("| 0.770 / 0.770 | +0.020 [-0.010, +0.050] |")


@pytest.mark.parametrize("name", ["whole_feed", "whole_feed_demo"])
def test_the_docs_tables_are_the_committed_runs(name):
    result = json.loads((ROOT / f"metrics/{name}.json").read_text())
    docs = (ROOT / "docs/real-headlines.md").read_text().replace("\n  ", "\n")  # the demo's sits in a list item
    assert whole_feed.markdown_table(result) in docs, f"rerun: python -m scripts.whole_feed --name {name} --table"
