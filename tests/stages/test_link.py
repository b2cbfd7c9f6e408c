"""The link stage on a tiny project: every span of the teacher's, the reviewed and tag's tables gets the symbol of
its headline's date, the gold and the feed's own symbols score it, names meeting one feed symbol are proposed as
aliases, names first seen after the training split head the watch queue; reruns are byte-identical and a bad
master row stops the stage with its file and line."""

import csv
import datetime as dt
import json

import polars as pl
import pytest

from stages import link
from stages.core.cli import run_stage
from stages.core.errors import InputError
from stages.core.schema import SPANS
from tests.helpers import project, shipped_params

D = dt.date.fromisoformat
MASTER = (
    "symbol,name,aliases,exchange,country,valid_from,valid_to,security_id\n"
    "AAPL,Apple Inc.,,NASDAQ,United States,,,\n"
    "TSLA,Tesla Inc,Tesla Motors,NASDAQ,United States,,,\n"
    "FB,Facebook,,NASDAQ,United States,,2022-06-08,META\n"
    "META,Meta Platforms,,NASDAQ,United States,2022-06-09,,META\n"
    "GOOGL,Alphabet Inc.,,NASDAQ,United States,,,\n"
)
SUPPLEMENT = '{"symbol": "NFLX", "name": "Netflix", "exchange": "NASDAQ"}\n'
ACCEPTED = "alias,symbol,valid_from,valid_to\napple computer,AAPL,,\n"
GOLD = [
    {"text": "Apple Shares Rise", "date": "2015-03-02", "mentions": [{"start": 0, "end": 5, "symbol": "AAPL"}]},
    {"text": "Facebook (FB) Slides", "date": "2023-01-04", "mentions": [{"start": 0, "end": 8, "symbol": "META"}]},
    {"text": "Google Unveils Phone", "date": "2016-05-02", "mentions": [{"start": 0, "end": 6, "symbol": "GOOGL"}]},
    {"text": "Markets Rally", "date": "2018-01-02", "mentions": []},
]
TAGGED_SPAN = pl.Struct({"start": pl.Int32, "end": pl.Int32, "text": pl.String, "score": pl.Float64, "name": pl.String})
ARGV = [
    "--teacher", "labels/llm_labels.parquet",
    "--reviewed", "reviewed",
    "--tagged", "tagged/headlines.parquet",
    "--out-dir", "linked",
    "--metrics", "metrics/link.json",
    "--summary", "metrics/linking.json",
    "--watch-plot", "metrics/watch_by_month.csv",
]  # fmt: skip
OUTPUTS = [
    "linked/teacher.parquet",
    "linked/reviewed/train.parquet",
    "linked/reviewed/valid.parquet",
    "linked/reviewed/test.parquet",
    "linked/tagged.parquet",
    "linked/alias_proposals.csv",
    "linked/watch_queue.csv",
    "metrics/link.json",
    "metrics/linking.json",
    "metrics/watch_by_month.csv",
]


def span(text: str, mention: str, **extra) -> dict:
    start = text.index(mention)
    return {"start": start, "end": start + len(mention), "text": mention, **extra}


def teacher_table() -> pl.DataFrame:
    rows = [
        ("e1", "Google Unveils Phone", "2016-05-02", [("Google", "Alphabet")]),  # the teacher's name links it
        ("e2", "Apple (AAPL) And Tesla Rise", "2014-01-02", [("Apple", "Apple"), ("Tesla", "Tesla")]),
        ("e3", "Meta Platforms Beats", "2015-06-01", [("Meta Platforms", "Meta Platforms")]),
        ("e4", "Quiet Day On Wall Street", "2015-06-02", None),
    ]
    return pl.DataFrame(
        {
            "id": [r[0] for r in rows],
            "text": [r[1] for r in rows],
            "date": [D(r[2]) for r in rows],
            "mentions": [[m for m, _ in r[3]] if r[3] else [] for r in rows],
            "names": [[n for _, n in r[3]] if r[3] else [] for r in rows],
            "teacher_spans": [[span(r[1], m) for m, _ in r[3]] if r[3] else None for r in rows],
        },
        schema={
            "id": pl.String,
            "text": pl.String,
            "date": pl.Date,
            "mentions": pl.List(pl.String),
            "names": pl.List(pl.String),
            "teacher_spans": SPANS,
        },
    )


def reviewed_table(id_: str, text: str, day: str, mentions: list[str]) -> pl.DataFrame:
    return pl.DataFrame(
        {"id": [id_], "text": [text], "date": [D(day)], "label_spans": [[span(text, m) for m in mentions]]},
        schema={"id": pl.String, "text": pl.String, "date": pl.Date, "label_spans": SPANS},
    )


def tagged_table() -> pl.DataFrame:
    rows = [
        # id, date, text, (mention, cluster name), the feed's symbol
        ("t1", "2015-03-02", "Apple Shares Rise", [("Apple", "Apple")], "AAPL"),
        ("t2", "2016-05-02", "Google Unveils Phone", [("Google", None)], "GOOGL"),
        ("t3", "2017-02-01", "Google Beats Estimates", [("Google", "Alphabet")], "GOOGL"),  # the cluster name links it
        ("t4", "2019-07-01", "Google Faces Probe", [("Google", None)], " googl "),
        ("t5", "2023-01-04", "Facebook (FB) Slides", [("Facebook", None)], "FB"),  # linked META: the same security
        ("t6", "2018-01-02", "Markets Rally", [], None),
        ("t7", "2019-03-04", "Zorblax Corp Soars", [("Zorblax Corp", "Zorblax")], "ZRBX"),
        ("t8", "2018-05-05", "Tesla Motors Recalls Cars", [("Tesla Motors", "Tesla")], "TSLA"),
        ("t9", "2020-01-06", "Stocks Slip", [], "AAPL"),
    ]
    return pl.DataFrame(
        {
            "id": [r[0] for r in rows],
            "date": [D(r[1]) for r in rows],
            "text": [r[2] for r in rows],
            "spans": [[span(r[2], m, score=0.9, name=n) for m, n in r[3]] for r in rows],
            "model": ["gliner"] * len(rows),
            "model_version": ["abc123"] * len(rows),
            "symbol": [r[4] for r in rows],
        },
        schema={
            "id": pl.String,
            "date": pl.Date,
            "text": pl.String,
            "spans": pl.List(TAGGED_SPAN),
            "model": pl.String,
            "model_version": pl.String,
            "symbol": pl.String,
        },
    )


@pytest.fixture
def stage_dir(tmp_path, monkeypatch):
    params = shipped_params()
    params = {"split": params["split"], "link": params["link"]}
    params["link"].update(
        master_files=["master/master.csv", "master/supplement.jsonl"],
        accepted_aliases="master/accepted_aliases.csv",
        gold_file="gold/symbol_gold.jsonl",
        symbol_column="symbol",
    )
    tables = {
        "labels/llm_labels.parquet": teacher_table(),
        "reviewed/train.parquet": reviewed_table("r1", "Tesla Motors Unveils Roadster", "2012-05-01", ["Tesla Motors"]),
        "reviewed/valid.parquet": reviewed_table("r2", "Apple Computer Opens Store", "2017-03-01", ["Apple Computer"]),
        "reviewed/test.parquet": reviewed_table("r3", "Why TSLA Is Moving", "2019-04-01", ["TSLA"]),
        "tagged/headlines.parquet": tagged_table(),
    }
    directory = project(tmp_path, params, tables=tables)
    (directory / "master").mkdir()
    (directory / "master/master.csv").write_text(MASTER)
    (directory / "master/supplement.jsonl").write_text(SUPPLEMENT)
    (directory / "master/accepted_aliases.csv").write_text(ACCEPTED)
    (directory / "gold").mkdir()
    (directory / "gold/symbol_gold.jsonl").write_text("".join(json.dumps(g) + "\n" for g in GOLD))
    monkeypatch.chdir(directory)
    return directory


def linked(directory, name: str) -> list[dict]:
    return pl.read_parquet(directory / "linked" / name).to_dicts()


def spans_by_id(rows: list[dict]) -> dict[str, list[tuple]]:
    return {r["id"]: [(s["text"], s["symbol"], s["evidence"], s["link_score"]) for s in r["spans"]] for r in rows}


def read_csv(path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_every_span_gets_the_symbol_of_its_day_and_every_headline_its_symbols(stage_dir):
    link.main(ARGV)
    for name in OUTPUTS:
        assert (stage_dir / name).is_file(), name

    teacher = linked(stage_dir, "teacher.parquet")
    assert list(teacher[0]) == ["id", "text", "date", "mentions", "names", "spans", "symbols"]
    assert spans_by_id(teacher) == {
        "e1": [("Google", "GOOGL", "name", 0.9)],
        "e2": [("Apple", "AAPL", "ticker", 1.0), ("Tesla", "TSLA", "alias", 0.95)],
        "e3": [("Meta Platforms", "FB", "alias", 0.95)],  # the new name, before the rename
        "e4": [],
    }
    assert {r["id"]: r["symbols"] for r in teacher} == {"e1": ["GOOGL"], "e2": ["AAPL", "TSLA"], "e3": ["FB"], "e4": []}
    assert teacher[1]["spans"][0] == {
        "start": 0,
        "end": 5,
        "text": "Apple",
        "symbol": "AAPL",
        "link_score": 1.0,
        "evidence": "ticker",
        "candidates": [{"symbol": "AAPL", "name": "Apple Inc.", "score": 1.0, "evidence": "ticker"}],
    }

    reviewed = {split: linked(stage_dir, f"reviewed/{split}.parquet") for split in ("train", "valid", "test")}
    assert {split: spans_by_id(rows) for split, rows in reviewed.items()} == {
        "train": {"r1": [("Tesla Motors", "TSLA", "alias", 0.95)]},
        "valid": {"r2": [("Apple Computer", "AAPL", "alias", 0.95)]},  # the accepted alias
        "test": {"r3": [("TSLA", "TSLA", "ticker", 1.0)]},
    }
    assert reviewed["test"][0]["symbols"] == ["TSLA"]

    tagged = linked(stage_dir, "tagged.parquet")
    assert list(tagged[0]) == ["id", "date", "text", "model", "model_version", "symbol", "spans", "symbols"]
    assert spans_by_id(tagged) == {
        "t1": [("Apple", "AAPL", "alias", 0.95)],
        "t2": [("Google", None, None, 0.0)],
        "t3": [("Google", "GOOGL", "name", 0.9)],
        "t4": [("Google", None, None, 0.0)],
        "t5": [("Facebook", "META", "ticker", 1.0)],
        "t6": [],
        "t7": [("Zorblax Corp", None, None, 0.0)],
        "t8": [("Tesla Motors", "TSLA", "alias", 0.95)],
        "t9": [],
    }
    assert [r["symbols"] for r in tagged] == [["AAPL"], [], ["GOOGL"], [], ["META"], [], [], ["TSLA"], []]
    assert tagged[2]["spans"][0]["score"] == 0.9 and tagged[2]["spans"][0]["name"] == "Alphabet"  # tag's fields kept


def test_metrics_score_the_gold_and_the_feed(stage_dir):
    link.main(ARGV)
    metrics = json.loads((stage_dir / "metrics/link.json").read_text())
    assert metrics["gold"] == {
        "mentions": 3,
        "correct": 2,
        "accuracy": 0.6667,
        "accuracy_without_accepted_aliases": 0.6667,
        "errors": [
            {
                "text": "Google Unveils Phone",
                "date": "2016-05-02",
                "mention": "Google",
                "gold": "GOOGL",
                "linked": None,
                "evidence": None,
                "candidates": [],
            }
        ],
    }
    assert metrics["feed"] == {
        "gold_mentions_in_feed": 3,  # every gold headline is in the tagged feed here
        "tag_found_gold_span": 3,
        "tag_found_and_linked_right": 2,
        "end_to_end_accuracy": 0.6667,
        "symbol_column": "symbol",
        "headlines_with_symbol": 8,
        "hit_rate": 0.5,  # t1, t3, t5 (FB is META's earlier symbol), t8 of 8
        "headlines_with_company": 7,
        "hit_rate_with_company": 0.5714,
        "headlines_linked": 4,
        "hit_rate_where_linked": 1.0,  # every headline with a link has its feed symbol among them
    }
    assert metrics["tables"]["tagged"] == {
        "headlines": 9,
        "headlines_with_mentions": 7,
        "headlines_linked": 4,
        "mentions": 7,
        "linked": 4,
        "ambiguous": 0,
        "linked_share": 0.5714,
        "evidence": {"alias": 2, "name": 1, "ticker": 1},
    }
    assert metrics["tables"]["teacher"]["linked_share"] == 1.0
    assert sorted(metrics["tables"]) == ["reviewed_test", "reviewed_train", "reviewed_valid", "tagged", "teacher"]
    assert metrics["master"] == {
        "files": ["master/master.csv", "master/supplement.jsonl"],
        "accepted_aliases": "master/accepted_aliases.csv",
        "rows": 6,
        "symbols": 6,
        "securities": 5,
        "name_forms": 8,
        "dated_from": "2022-06-09",
        "dated_to": "2022-06-08",
    }
    assert metrics["alias_proposals"] == 1
    assert metrics["watch"] == {
        "cutoff": "2016-12-31",
        "headlines": 9,
        "mentions": 7,
        "unlinked_mentions": 3,
        "new_name_mentions": 2,
        "new_names": 2,
        "flagged_headlines": 4,
        "top_new_names": [["facebook", 1], ["zorblax", 1]],  # "tesla motors" is in the reviewed train split
    }
    assert json.loads((stage_dir / "metrics/linking.json").read_text()) == {
        "gold_accuracy": 0.6667,
        "gold_accuracy_without_accepted_aliases": 0.6667,  # the fixture's accepted alias meets no gold mention
        "gold_mentions": 3,
        "end_to_end_accuracy": 0.6667,
        "hit_rate": 0.5,
        "hit_rate_with_company": 0.5714,
        "hit_rate_where_linked": 1.0,
        "tagged_linked_share": 0.5714,
        "watch_unlinked_mentions": 3,
        "watch_new_names": 2,
        "watch_new_name_mentions": 2,
    }


def test_alias_proposals_and_the_watch_queue(stage_dir):
    link.main(ARGV)
    assert read_csv(stage_dir / "linked/alias_proposals.csv") == [
        {
            "alias": "google",
            "symbol": "GOOGL",
            "count": "3",
            "name_count": "3",
            "precision": "1.0",
            "first_date": "2016-05-02",
            "last_date": "2019-07-01",
            "links_now_to": "",
            "names_security": "False",
            "new_security": "False",
        }
    ]
    assert read_csv(stage_dir / "linked/watch_queue.csv") == [
        {"id": "t7", "date": "2019-03-04", "text": "Zorblax Corp Soars", "new_names": "zorblax", "unlinked": "1"},
        {"id": "t5", "date": "2023-01-04", "text": "Facebook (FB) Slides", "new_names": "facebook", "unlinked": "0"},
        {"id": "t2", "date": "2016-05-02", "text": "Google Unveils Phone", "new_names": "", "unlinked": "1"},
        {"id": "t4", "date": "2019-07-01", "text": "Google Faces Probe", "new_names": "", "unlinked": "1"},
    ]
    months = {row.pop("month"): row for row in read_csv(stage_dir / "metrics/watch_by_month.csv")}
    assert list(months) == [
        "2015-03", "2016-05", "2017-02", "2018-01", "2018-05", "2019-03", "2019-07", "2020-01", "2023-01",
    ]  # fmt: skip
    assert months["2019-03"] == {
        "headlines": "1",
        "mentions": "1",
        "unlinked_mentions": "1",
        "new_name_mentions": "1",
        "top_new_names": "zorblax:1",
    }
    assert months["2018-01"] == {
        "headlines": "1",
        "mentions": "0",
        "unlinked_mentions": "0",
        "new_name_mentions": "0",
        "top_new_names": "",
    }


def test_an_accepted_proposal_links_on_the_next_run(stage_dir):
    with open(stage_dir / "master/accepted_aliases.csv", "a") as f:
        f.write("google,GOOGL,,\n")
    link.main(ARGV)
    assert read_csv(stage_dir / "linked/alias_proposals.csv") == []
    assert [r["symbols"] for r in linked(stage_dir, "tagged.parquet")][1:4] == [["GOOGL"], ["GOOGL"], ["GOOGL"]]
    assert json.loads((stage_dir / "metrics/linking.json").read_text())["gold_accuracy"] == 1.0


def test_a_rerun_writes_the_same_bytes(stage_dir):
    link.main(ARGV)
    first = {name: (stage_dir / name).read_bytes() for name in OUTPUTS}
    link.main(ARGV)
    assert {name: (stage_dir / name).read_bytes() for name in OUTPUTS} == first


def test_a_malformed_master_line_stops_the_stage_naming_file_and_line(stage_dir):
    (stage_dir / "master/master.csv").write_text(MASTER.replace(",,2022-06-08,META", ",,2022-06-31,META"))
    with pytest.raises(SystemExit) as stopped:
        run_stage(lambda: link.main(ARGV))
    assert str(stopped.value.code) == (
        "master/master.csv:4: valid_to: '2022-06-31' is not allowed: expected a real date written YYYY-MM-DD"
    )
    assert not (stage_dir / "linked").exists() and not (stage_dir / "metrics").exists()


def test_a_malformed_supplement_line_names_its_line(stage_dir):
    (stage_dir / "master/supplement.jsonl").write_text(
        SUPPLEMENT + '{"symbol": "IBM", "name": "IBM", "sector": "Tech"}\n'
    )
    with pytest.raises(SystemExit) as stopped:
        run_stage(lambda: link.main(ARGV))
    assert str(stopped.value.code).startswith("master/supplement.jsonl:2: unknown column 'sector'")
    assert "\n" not in str(stopped.value.code)


def test_a_feed_without_the_symbol_column_is_named(stage_dir):
    tagged_table().drop("symbol").write_parquet(stage_dir / "tagged/headlines.parquet")
    with pytest.raises(
        InputError, match=r"tagged/headlines\.parquet: no column 'symbol' \(params link\.symbol_column\)"
    ):
        link.main(ARGV)
