import datetime as dt
import subprocess
import sys


from stages.evaluate import bootstrap_f1_ci, counts_per_headline, partial_f1, score, top_errors
from tests.conftest import ROOT

sys.path.insert(0, str(ROOT / "scripts"))
from learning_curve import curve_rows  # noqa: E402


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
    assert score([{"spans": g, "text": "x" * 30, "date": dt.date(2019, 1, 1)} for g in gold], pred,
                 {"resamples": 50, "seed": 0})["f1"] == 0.0


def test_score_breaks_f1_down_by_year_and_errors_name_spans_with_an_example():
    records = [{"text": "Apple Up", "spans": [{"start": 0, "end": 5}], "date": dt.date(2019, 3, 1)},
               {"text": "Dow Down", "spans": [], "date": dt.date(2020, 3, 1)}]
    predicted = [[{"start": 0, "end": 5}], [{"start": 0, "end": 3}]]
    result = score(records, predicted, {"resamples": 50, "seed": 0})
    assert result["f1_by_year"] == {"2019": 1.0, "2020": 0.0}
    assert top_errors(records, predicted, 5) == [
        {"kind": "false_positive", "span": "Dow", "count": 1, "example": "Dow Down"}]


def test_learning_curve_reads_points_from_dvc_exp_show():
    def exp(labels, n, f1):
        return {"data": {"params": {"params.yaml": {"data": {"finetune_gliner": {"train_labels": labels}}}},
                         "metrics": {"metrics/metrics.json": {"data": {"gliner": {"f1": f1, "f1_ci_low": 0, "f1_ci_high": 1}}},
                                     "metrics/finetune_gliner.json": {"data": {"train_records": n}}}}}
    shown = [{**exp("reviewed", 300, 0.7), "experiments": [{"revs": [exp("llm", 100, 0.5)]},
                                                           {"revs": [exp("reviewed", 100, 0.6)]}]}]
    assert [(r["labels"], r["n"], r["f1"]) for r in curve_rows(shown)] == [
        ("llm", 100, 0.5), ("reviewed", 100, 0.6), ("reviewed", 300, 0.7)]


def test_readme_results_table_matches_the_committed_metrics():
    run = subprocess.run([sys.executable, "scripts/results_table.py", "--check"], cwd=ROOT, capture_output=True,
                         text=True)
    assert run.returncode == 0, run.stderr
