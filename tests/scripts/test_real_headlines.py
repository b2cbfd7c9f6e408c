"""The real-headline run's pure parts: which headlines it takes, the dates it gives them, capitalised and
company-only scoring."""

import datetime as dt
import json
import subprocess

import yaml

from scripts import real_headlines
from stages.core.stage_params import Bootstrap, SplitParams

TEXT = {"capture_output": True, "text": True}

RANGES = SplitParams(
    ranges={
        "train": {"start": "2010-01-01", "end": "2010-01-03"},
        "valid": {"start": "2017-01-01", "end": "2018-12-31"},
        "test": {"start": "2019-01-01", "end": "2020-12-31"},
    }
)


def rows(n: int) -> list[dict]:
    return [{"id": f"h{i}", "text": f"Headline {i}", "spans": []} for i in range(n)]


def test_slice_is_disjoint_deterministic_and_independent_of_file_order():
    source = rows(30) + [{"id": "dup", "text": "Headline 3", "spans": []}]
    taken, extra = real_headlines.take_slice(source, 10, 15)
    again, again_extra = real_headlines.take_slice(list(reversed(source)), 10, 15)
    assert [r["id"] for r in taken] == [r["id"] for r in again] and extra == again_extra
    assert len(taken) == 10 and len(extra) == 15
    texts = [r["text"] for r in taken + extra]
    assert len(texts) == len(set(texts))  # deduplicated by text, and no headline in both
    assert real_headlines.take_slice(source, 10, 100)[1][-1]["text"] in {r["text"] for r in source}


def test_slice_larger_than_the_source_is_an_error():
    try:
        real_headlines.take_slice(rows(5), 6, 0)
    except SystemExit as error:
        assert "only 5 distinct headlines" in str(error)
    else:
        raise AssertionError("a slice larger than the source must stop")


def test_dates_put_80_10_10_percent_in_each_split_range():
    dated = real_headlines.assign_dates(rows(10), RANGES)
    assert real_headlines.split_sizes(10) == {"train": 8, "valid": 1, "test": 1}
    dates = [dt.date.fromisoformat(r["date"]) for r in dated]
    in_range = {name: sum(w.start <= d <= w.end for d in dates) for name, w in RANGES.ranges.items()}
    assert in_range == {"train": 8, "valid": 1, "test": 1}
    # the train range holds 3 days: the 8 train headlines wrap around inside it
    days = ["2010-01-01", "2010-01-02", "2010-01-03"]
    assert [d.isoformat() for d in dates[:8]] == days * 2 + days[:2]
    assert [r["id"] for r in dated] == [f"h{i}" for i in range(10)]  # order and rows kept


def span(text: str, word: str) -> dict:
    return {"start": text.index(word), "end": text.index(word) + len(word), "text": word}


def test_capitalised_scoring_drops_lowercase_spans_on_both_sides():
    text = "gold rises; Sebi fines 3M and realty stocks"
    gold = [{"text": text, "spans": [span(text, w) for w in ("gold", "Sebi", "3M", "realty stocks")]}]
    predicted = [[span(text, w) for w in ("gold", "Sebi", "fines")]]
    not_companies = real_headlines.NotCompanies.from_yaml({"texts": {"regulators": ["sebi"]}, "last_words": ["stocks"]})
    result = real_headlines.scores(gold, predicted, Bootstrap(resamples=10, seed=0), not_companies)
    assert result["all"]["precision"] == round(2 / 3, 4) and result["all"]["recall"] == 0.5
    # capitalised: gold {Sebi, 3M}, predicted {Sebi} ("fines" is lowercase too)
    assert result["capitalised"]["precision"] == 1.0 and result["capitalised"]["recall"] == 0.5
    # company only: gold {3M}, predicted {} (Sebi is a regulator): nothing right, nothing wrong said
    assert result["company_only"]["recall"] == 0.0 and result["company_only"]["precision"] == 0.0


def test_company_only_drops_listed_texts_and_sector_phrases_but_keeps_companies_containing_those_words():
    text = "Nifty, Oil India, PSU banks, Yes Bank and gold"
    spans = [span(text, w) for w in ("Nifty", "Oil India", "PSU banks", "Yes Bank", "gold")]
    not_companies = real_headlines.NotCompanies.from_yaml(yaml.safe_load(real_headlines.NOT_COMPANIES.read_text()))
    assert [s["text"] for s in real_headlines.company_only(spans, not_companies)] == ["Oil India", "Yes Bank"]


def test_seed_table_sums_each_model_up_per_view():
    figures = {"f1": 0.5, "f1_ci_low": 0.4, "f1_ci_high": 0.6, "precision": 0.5, "recall": 0.5}
    by_seed = {
        "gliner": {
            seed: {"test": {view: figures | {"f1": f1} for view in ("all", *real_headlines.VIEWS)}}
            for seed, f1 in ((0, 0.6), (1, 0.8))
        }
    }
    table = real_headlines.seed_table(by_seed, "test")
    assert set(table) == {"all", *real_headlines.VIEWS}
    assert table["all"]["gliner"]["f1_mean"] == 0.7 and table["company_only"]["gliner"]["seeds"] == 2


def test_the_docs_table_is_the_committed_runs():
    result = json.loads(real_headlines.OUT.read_text())
    docs = (real_headlines.ROOT / "docs/real-headlines.md").read_text()
    assert real_headlines.markdown_table(result) in docs, "rerun: python -m scripts.real_headlines --table"


def test_the_make_targets_run_every_experiment_on_the_same_real_run():
    commands = {}
    for target in ("real-headlines", "real-learning-curve", "whole-feed", "review-rounds"):
        dry = subprocess.run(["make", "-n", target, "REAL_RUN=/runs/real"], cwd=real_headlines.ROOT, **TEXT)
        commands[target] = [line for line in dry.stdout.splitlines() if line.startswith("python -m scripts.")]
    assert commands == {
        "real-headlines": ["python -m scripts.real_headlines --workdir /runs/real"],
        "real-learning-curve": [
            "python -m scripts.learning_curve --run /runs/real --sizes 100 300 600 all --seeds 0 1 2 "
            "--name real_learning_curve"
        ],
        "whole-feed": ["python -m scripts.whole_feed --run /runs/real --budget 300 --seeds 0 1 2"],
        "review-rounds": ["python -m scripts.review_rounds --run /runs/real --batch 300 --rounds 2 --seeds 0 1 2"],
    }
