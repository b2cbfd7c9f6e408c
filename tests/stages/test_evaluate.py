import csv
import datetime as dt
import json
import shutil
import subprocess
import sys
from collections import Counter

import polars as pl
import pytest

from scripts.learning_curve import paired_pool, training_sets
from scripts.student_runs import plot_f1
from stages import evaluate
from stages.core.io import write_csv
from stages.core.metrics import bootstrap_f1_ci, counts_per_headline, partial_f1, score
from stages.core.schema import SPANS
from stages.core.stage_params import Bootstrap
from stages.evaluate import top_errors
from tests.helpers import ROOT, sh


def span(start, end):
    return {"start": start, "end": end}


def test_bootstrap_ci_brackets_f1_is_seeded_and_narrows_with_more_data():
    gold = [[span(0, 5)]] * 40
    pred = [[span(0, 5)]] * 30 + [[span(1, 5)]] * 10
    counts = counts_per_headline(gold, pred)
    low, high = bootstrap_f1_ci(counts, 500, 0)
    assert low < 0.75 < high and (low, high) == bootstrap_f1_ci(counts, 500, 0)
    wide = bootstrap_f1_ci(counts[::4], 500, 0)
    assert wide[1] - wide[0] > high - low
    assert bootstrap_f1_ci(counts_per_headline([[span(0, 5)]] * 5, [[span(0, 5)]] * 5), 100, 0) == (1.0, 1.0)


def test_partial_f1_credits_overlaps_that_exact_f1_does_not():
    gold, pred = [[span(0, 10)], [span(0, 4)]], [[span(0, 6)], [span(20, 24)]]
    assert partial_f1(gold, pred) == 0.5
    assert (
        score(
            [{"spans": g, "text": "x" * 30, "date": dt.date(2019, 1, 1)} for g in gold],
            pred,
            Bootstrap(resamples=50, seed=0),
        )["f1"]
        == 0.0
    )


def test_score_breaks_f1_down_by_year_and_errors_name_spans_with_an_example():
    records = [
        {"text": "Apple Up", "spans": [{"start": 0, "end": 5}], "date": dt.date(2019, 3, 1)},
        {"text": "Dow Down", "spans": [], "date": dt.date(2020, 3, 1)},
    ]
    predicted = [[{"start": 0, "end": 5}], [{"start": 0, "end": 3}]]
    result = score(records, predicted, Bootstrap(resamples=50, seed=0))
    assert result["f1_by_year"] == {"2019": 1.0, "2020": 0.0}
    assert top_errors(records, predicted, 5) == [
        {"kind": "false_positive", "span": "Dow", "count": 1, "example": "Dow Down"}
    ]


def test_learning_curve_compares_the_same_headlines_labelled_by_teacher_and_by_humans():
    import polars as pl

    from stages.core.schema import SPANS

    spans = [{"start": 0, "end": 4, "text": "Visa"}]
    train = pl.DataFrame(
        {
            "id": [f"h{i:02d}" for i in range(30)],
            "text": ["Visa Up"] * 30,
            "label_source": ["human"] * 25 + ["llm"] * 5,
            "valid": [True] * 28 + [False] * 2,
            "label_spans": [spans] * 30,
            "teacher_spans": [[]] * 30,
        },
        schema_overrides={"label_spans": SPANS, "teacher_spans": SPANS},
    )
    pool = paired_pool(train)
    assert len(pool["human"]) == len(pool["teacher"]) == 25  # human-labelled and validly answered
    sets = training_sets(pool, [10, 20, 40, None], seed=0)  # 40 of 25 is all 25: trained once
    assert [(labels, n) for labels, n, _ in sets] == [
        ("teacher", 10),
        ("human", 10),
        ("teacher", 20),
        ("human", 20),
        ("teacher", 25),
        ("human", 25),
    ]
    ids = {(labels, n): [r["id"] for r in records] for labels, n, records in sets}
    assert ids[("teacher", 10)] == ids[("human", 10)] and set(ids[("human", 10)]) < set(ids[("human", 20)])
    assert all(r["spans"] == [] for r in sets[0][2]) and all(r["spans"] == spans for r in sets[1][2])


def test_readme_results_table_matches_the_committed_metrics():
    run = subprocess.run(
        [sys.executable, "-m", "scripts.results_table", "--check"], cwd=ROOT, capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr


def test_experiment_plots_render_offline_to_a_png(tmp_path):
    path = tmp_path / "curve.png"
    plot_f1(
        path,
        "t",
        "n",
        [{"label": "a", "x": [1, 2], "f1": [0.2, 0.4], "low": [0.1, 0.3], "high": [0.3, 0.5], "style": "o-"}],
        teacher_f1=0.5,
    )
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000


class FakeStudent:
    """Predicts `Apple` wherever a headline has it, and loads from any path."""

    @staticmethod
    def load(_directory, int8=False, decode=None):
        return lambda texts, batch_size: [
            [{"start": t.find("Apple"), "end": t.find("Apple") + 5, "text": "Apple"}] if "Apple" in t else []
            for t in texts
        ]


def run_evaluate(tmp_path, monkeypatch, rows: list[dict]) -> dict:
    """The evaluate stage on a test split of `rows`, with fake students; returns its metrics."""
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(evaluate, "STUDENTS", {"gliner": FakeStudent, "spanmarker": FakeStudent})
    pl.DataFrame(
        rows,
        schema={
            "id": pl.String,
            "text": pl.String,
            "date": pl.Date,
            "label_source": pl.String,
            "label_spans": SPANS,
            "teacher_spans": SPANS,
            "valid": pl.Boolean,
        },
    ).write_parquet("test.parquet")
    (tmp_path / "teacher.json").write_text("{}")
    (tmp_path / "test_sets").mkdir(exist_ok=True)
    pl.DataFrame({"label_source": ["human", "human", "accepted", "llm"]}).write_parquet("train.parquet")
    evaluate.main(
        [
            "--test",
            "test.parquet",
            "--teacher-speed",
            "teacher.json",
            "--gliner",
            "g",
            "--spanmarker",
            "s",
            "--gliner-export",
            "ge",
            "--spanmarker-export",
            "se",
            "--test-set-dir",
            "test_sets",
            "--quality",
            "quality",
            "--metrics",
            "metrics.json",
            "--speed",
            "speed.json",
            "--errors",
            "errors.csv",
            "--f1-plot",
            "f1.csv",
            "--cost-plot",
            "cost.csv",
            "--train",
            "train.parquet",
            "--rounds",
            "rounds.csv",
        ]
    )
    return json.loads((tmp_path / "metrics.json").read_text())


def test_the_rounds_table_keeps_one_row_per_train_review_count():
    metrics = {name: {"f1": 0.5} for name in ("teacher", "gliner", "spanmarker", "gliner_export", "spanmarker_export")}
    first = evaluate.with_round([], Counter(human=100, llm=50), metrics)
    assert first == [{"train_reviewed": 100, "train_accepted": 0} | {name: 0.5 for name in metrics}]
    second = evaluate.with_round(first, Counter(human=200, accepted=30), metrics | {"gliner": {"f1": 0.7}})
    assert [(r["train_reviewed"], r["train_accepted"], r["gliner"]) for r in second] == [(100, 0, 0.5), (200, 30, 0.7)]
    # a rerun at a count already in the table (a changed recipe, say) replaces that round's row
    rerun = evaluate.with_round(second, Counter(human=100), metrics | {"gliner": {"f1": 0.6}})
    assert [(r["train_reviewed"], r["gliner"]) for r in rerun] == [(100, 0.6), (200, 0.7)]


def headline(i: int, text: str, source: str, valid: bool = True, spans=()) -> dict:
    return {
        "id": f"h{i}",
        "text": text,
        "date": dt.date(2019, 1, i + 1),
        "label_source": source,
        "label_spans": list(spans),
        "teacher_spans": [],
        "valid": valid,
    }


@pytest.mark.parametrize("why", ["all discarded", "all without a label"])
def test_no_usable_test_headline_says_so_instead_of_dividing_by_zero(why, tmp_path, monkeypatch, caplog):
    valid = why == "all discarded"  # a discarded record has no label; an invalid answer with no review neither
    metrics = run_evaluate(tmp_path, monkeypatch, [headline(i, "Apple Up", "none", valid) for i in range(3)])
    assert (metrics["reference"], metrics["test_records"], metrics["test_headlines_in_split"]) == ("none", 0, 3)
    assert metrics["note"].startswith("nothing scored on the test split: no test headline has a usable label")
    assert "gliner" not in metrics and "nothing scored on the test split" in caplog.text
    assert (tmp_path / "errors.csv").read_text() == "model,kind,span,count,example\n"
    # no round measured against human labels, but the table DVC expects is there
    assert (tmp_path / "rounds.csv").read_text().startswith("train_reviewed,train_accepted,teacher")


def test_errors_csv_cannot_run_a_headline_as_a_spreadsheet_formula(tmp_path, monkeypatch):
    text = '=HYPERLINK("http://x.example","Apple")'
    run_evaluate(
        tmp_path,
        monkeypatch,
        [
            headline(0, text, "human"),
            headline(1, "-Tesla Falls", "human", spans=[{"start": 1, "end": 6, "text": "Tesla"}]),
        ],
    )
    errors = list(csv.DictReader((tmp_path / "errors.csv").open()))
    assert {(r["kind"], r["span"], r["count"], r["example"]) for r in errors if r["model"] == "gliner"} == {
        ("false_positive", "Apple", "1", "'" + text),
        ("false_negative", "Tesla", "1", "'-Tesla Falls"),
    }


def test_write_csv_quotes_formula_text_and_leaves_numbers_alone(tmp_path):
    path = tmp_path / "t.csv"
    write_csv(
        path,
        [{"a": "=1+2", "b": -0.5, "c": "-0.5", "d": "+SUM(A1)", "e": "@cmd", "f": "plain", "g": -3}],
        list("abcdefg"),
    )
    assert path.read_text().splitlines()[1] == "'=1+2,-0.5,-0.5,'+SUM(A1),'@cmd,plain,-3"


def test_quality_files_hold_test_p_r_f1_with_ci_reference_and_size_per_model(tmp_path, monkeypatch):
    rows = [
        headline(0, "Apple Up", "human", spans=[{"start": 0, "end": 5, "text": "Apple"}]),
        headline(1, "Tesla Falls", "human", spans=[{"start": 0, "end": 5, "text": "Tesla"}]),
    ]
    metrics = run_evaluate(tmp_path, monkeypatch, rows)
    quality = {path.stem: json.loads(path.read_text()) for path in (tmp_path / "quality").glob("*.json")}
    assert set(quality) == {"teacher", "gliner", "gliner_export", "spanmarker", "spanmarker_export"}
    for name, row in quality.items():
        full = metrics[name]
        assert row == {
            "f1": full["f1"],
            "f1_low": full["f1_ci_low"],
            "f1_high": full["f1_ci_high"],
            "precision": full["precision"],
            "recall": full["recall"],
            "reference": "human",
            "headlines": 2,
        }
    assert "f1_by_year" in metrics["gliner"] and "partial_f1" in metrics["gliner"]  # the rest: the full file

    rows = [headline(i, "Apple Up", "none", valid=False) for i in range(2)]  # a rerun with nothing to score
    run_evaluate(tmp_path, monkeypatch, rows)
    assert [path.name for path in (tmp_path / "quality").iterdir()] == ["nothing_scored.json"]  # no stale file


def test_dvc_metrics_show_of_the_committed_quality_metrics_is_one_table_in_120_columns(tmp_path):
    """What a person reads first: one row per model, F1 first, no speeds or stage internals (real dvc, on a copy
    of dvc.yaml, params.yaml and metrics/)."""
    for name in ("dvc.yaml", "params.yaml"):
        shutil.copy(ROOT / name, tmp_path / name)
    shutil.copytree(ROOT / "metrics", tmp_path / "metrics")
    sh(tmp_path, "dvc", "init", "--no-scm", "-q")
    shown = sh(tmp_path, "dvc", "metrics", "show", "metrics/quality").rstrip("\n").splitlines()
    assert max(len(line.rstrip()) for line in shown) <= 120, "\n".join(shown)
    assert shown[0].split()[:2] == ["Path", "f1"]
    paths = [line.split()[0] for line in shown[1:]]
    assert paths == sorted(f"metrics/quality/{path.name}" for path in (ROOT / "metrics/quality").glob("*.json"))
    assert {"metrics/quality/gliner.json", "metrics/quality/teacher.json"} <= set(paths)
    # the other metric dvc.yaml declares: link's figures, no stage internals either
    everything = sh(tmp_path, "dvc", "metrics", "show").splitlines()
    assert {line.split()[0] for line in everything[1:]} == set(paths) | {"metrics/linking.json"}
