"""The embedded sample is what users see first: check it covers what the issue promised."""

import csv
import datetime as dt
import json
import re
import subprocess
import sys

import pytest

from tests.helpers import ROOT


@pytest.fixture(scope="module")
def gold() -> list[dict]:
    """The demo's hand-made spans: what this file checks (other tests use fixtures of their own)."""
    with open(ROOT / "data/sample/reviewer_labels.jsonl", encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def test_sample_csv_matches_gold_and_spans_point_at_their_text(gold):
    with open(ROOT / "data/sample/headlines.csv", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert [(r["date"], r["text"]) for r in rows] == [(g["date"], g["text"]) for g in gold]
    assert 1400 <= len(rows) <= 1600
    for g in gold:
        for span in g["spans"]:
            assert g["text"][span["start"] : span["end"]] == span["text"]


def test_sample_covers_the_hard_cases(gold):
    years = {g["date"][:4] for g in gold}
    assert years == {str(y) for y in range(2010, 2021)}
    counts = [len(g["spans"]) for g in gold]
    assert counts.count(0) > 100 and counts.count(1) > 300 and sum(c >= 2 for c in counts) > 100
    all_text = "\n".join(g["text"] for g in gold)
    for index in ("Dow Jones", "S&P 500", "CAC 40"):
        assert index in all_text
    assert any(g["text"].isupper() for g in gold) and any(g["text"].islower() for g in gold)
    assert any("'s" in g["text"][s["end"] : s["end"] + 2] for g in gold for s in g["spans"])
    assert any(g["text"][s["start"] - 1 : s["start"]] == "(" for g in gold for s in g["spans"] if s["start"])
    assert any(s["text"] in ("Target", "Gap", "Visa", "Square", "Snap") for g in gold for s in g["spans"])
    assert not any(re.fullmatch(r"Dow Jones|S&P 500|CAC 40", s["text"]) for g in gold for s in g["spans"])


def test_generator_reproduces_the_committed_files(tmp_path):
    code = "import json; from scripts import make_sample_headlines as m; print(json.dumps(m.generate()))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    regenerated = json.loads(out)
    with open(ROOT / "data/sample/reviewer_labels.jsonl", encoding="utf-8") as f:
        committed = [json.loads(line) for line in f]
    assert [{k: r[k] for k in ("date", "spans", "text")} for r in regenerated] == committed
    with open(ROOT / "data/sample/symbol_gold.jsonl", encoding="utf-8") as f:
        gold = [json.loads(line) for line in f]
    assert [{k: r[k] for k in ("date", "mentions", "text")} for r in regenerated if r["mentions"]] == gold
    with open(ROOT / "data/sample/headlines.csv", encoding="utf-8", newline="") as f:
        symbols = {row["text"]: row["symbol"] for row in csv.DictReader(f)}
    assert all(symbols[g["text"]] == next(m["symbol"] for m in g["mentions"] if m["symbol"]) for g in gold[:50])


def test_the_symbol_gold_follows_the_tickers_that_changed():
    from scripts.make_sample_headlines import symbol_on

    assert [symbol_on("META", dt.date(2015, 1, 2)), symbol_on("META", dt.date(2022, 6, 9))] == ["FB", "META"]
    assert [symbol_on("BBRY", dt.date(2017, 10, 15)), symbol_on("BBRY", dt.date(2017, 10, 16))] == ["BBRY", "BB"]
    assert [symbol_on("S", dt.date(2020, 3, 31)), symbol_on("S", dt.date(2020, 4, 1))] == ["S", None]
    assert symbol_on("DNB", dt.date(2019, 6, 1)) is None and symbol_on("AAPL", dt.date(2019, 6, 1)) == "AAPL"
