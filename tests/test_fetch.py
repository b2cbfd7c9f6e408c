import polars as pl
import pytest

from stages.fetch import headline_id, normalise, read_source

COLUMNS = {"text": "title", "date": "published"}


def raw(rows):
    return pl.DataFrame(rows, schema={"title": pl.String, "published": pl.String}, orient="row")


def test_ids_are_stable_and_duplicates_counted():
    frame, counts = normalise(raw([("Apple Up", "2015-03-01 10:00:00"), ("Apple Up", "2015-03-01"),
                                   (" Tesla Down ", "2019-01-02")]), COLUMNS, "mine", "f.csv")
    assert frame["text"].to_list() == ["Apple Up", "Tesla Down"]
    assert frame["id"][0] == headline_id("2015-03-01", "Apple Up")
    assert counts == {"rows_in": 3, "bad_rows_dropped": 0, "duplicates_dropped": 1, "rows_out": 2,
                      "date_min": "2015-03-01", "date_max": "2019-01-02"}


def test_missing_column_names_the_file():
    with pytest.raises(SystemExit, match=r"f.csv: missing column\(s\) \['published'\]"):
        normalise(pl.DataFrame({"title": ["x"]}), COLUMNS, "mine", "f.csv")


def test_bad_rows_name_the_row_or_are_dropped_and_counted():
    rows = raw([("Apple Up", "2015-03-01"), ("Tesla Down", "March 5th"), ("", "2016-01-01")])
    with pytest.raises(SystemExit, match=r"f.csv: row 3: unparsable date 'March 5th' \(2 bad row"):
        normalise(rows, COLUMNS, "mine", "f.csv")
    frame, counts = normalise(rows, COLUMNS, "mine", "f.csv", on_bad_row="drop")
    assert frame.height == 1 and counts["bad_rows_dropped"] == 2


def test_reads_csv_jsonl_and_rejects_unknown_types(tmp_path):
    (tmp_path / "h.jsonl").write_text('{"title": "A", "published": "2012-01-01"}\n')
    assert read_source(tmp_path / "h.jsonl")["title"].to_list() == ["A"]
    (tmp_path / "h.xml").write_text("<a/>")
    with pytest.raises(SystemExit, match="unsupported file type"):
        read_source(tmp_path / "h.xml")
    with pytest.raises(SystemExit, match="not found"):
        read_source(tmp_path / "missing.csv")
