import json

import polars as pl
import pytest
import yaml

from stages import fetch
from stages.core.errors import PipelineError
from stages.core.stage_params import FetchParams, HfDataset
from stages.fetch import headline_id, normalise, read_file, read_hf_dataset
from tests.helpers import ROOT

SHIPPED = yaml.safe_load((ROOT / "params.yaml").read_text())["fetch"]


def fetch_params(**changes) -> FetchParams:
    """The shipped fetch section with these keys changed (no kept columns: the sample's `symbol` is no column of
    these tests' files), validated like a stage validates it."""
    return FetchParams.model_validate(SHIPPED | {"keep_columns": []} | changes)


PARAMS = fetch_params(source="mine", columns={"text": "title", "date": "published"})


def raw(rows, **extra):
    frame = pl.DataFrame(rows, schema={"title": pl.String, "published": pl.String}, orient="row")
    return frame.with_columns(**{k: pl.Series(v) for k, v in extra.items()})


def test_ids_are_stable_and_duplicates_counted():
    frame, counts = normalise(
        raw([("Apple Up", "2015-03-01 10:00:00"), ("Apple Up", "2015-03-01"), (" Tesla Down ", "2019-01-02")]),
        PARAMS,
        "f.csv",
    )
    assert frame["text"].to_list() == ["Apple Up", "Tesla Down"]
    assert frame["id"][0] == headline_id("2015-03-01", "Apple Up")
    assert counts["duplicates_dropped"] == 1 and counts["rows_out"] == 2
    assert (counts["date_min"], counts["date_max"]) == ("2015-03-01", "2019-01-02")


def test_missing_column_names_the_file():
    with pytest.raises(PipelineError, match=r"f.csv: missing column\(s\) \['published'\]"):
        normalise(pl.DataFrame({"title": ["x"]}), PARAMS, "f.csv")


def test_bad_rows_name_the_row_or_are_dropped_and_counted(tmp_path):
    path = tmp_path / "h.csv"
    path.write_bytes(
        b"title,published\nApple Up,2015-03-01\nTesla Down,March 5th\n,2016-01-01\nBad \xff Bytes,2016-02-02\n"
    )
    with pytest.raises(
        PipelineError, match=r"h.csv: line 3: unparsable date 'March 5th' \(accepted: YYYY-MM-DD.*\) \(3 bad row"
    ):
        normalise(read_file(path), PARAMS, str(path))
    frame, counts = normalise(read_file(path), PARAMS.model_copy(update={"on_bad_row": "drop"}), str(path))
    assert frame["text"].to_list() == ["Apple Up"]
    assert counts["bad_rows_dropped"] == {"empty_text": 1, "undecodable_bytes": 1, "unparsable_date": 1}
    path.write_bytes(b"title,published\nBad \xff Bytes,2016-02-02\n")
    with pytest.raises(PipelineError, match="h.csv: line 2: undecodable bytes"):
        normalise(read_file(path), PARAMS, str(path))


def test_filters_date_range_and_kept_columns():
    rows = raw(
        [("Apple Up", "2012-01-01"), ("Tesla Down", "2013-01-01"), ("Visa Flat", "2021-01-01")],
        Url=["https://www.benzinga.com/a", "https://other.com/b", "https://www.benzinga.com/c"],
    )
    params = fetch_params(
        source="mine",
        columns={"text": "title", "date": "published"},
        filters=[{"column": "Url", "contains": "benzinga.com"}],
        keep_columns=["Url"],
        date_range={"start": "2010-01-01", "end": "2020-12-31"},
    )
    frame, counts = normalise(rows, params, "f")
    assert frame["text"].to_list() == ["Apple Up"] and frame.columns[-1] == "Url"
    assert (counts["filtered_out"], counts["outside_date_range"]) == (1, 1)


def test_reads_jsonl_and_rejects_unknown_types(tmp_path):
    (tmp_path / "h.jsonl").write_text('{"title": "A", "published": "2012-01-01"}\n')
    assert read_file(tmp_path / "h.jsonl")["title"].to_list() == ["A"]
    (tmp_path / "h.xml").write_text("<a/>")
    with pytest.raises(PipelineError, match="unsupported file type"):
        read_file(tmp_path / "h.xml")
    with pytest.raises(PipelineError, match="not found"):
        read_file(tmp_path / "missing.csv")


def test_hf_dataset_path_streams_a_local_dataset_of_fnspid_schema(tmp_path):
    """The hub code path (datasets.load_dataset, streaming) on a local stand-in with FNSPID's columns."""
    rows = [
        {
            "Date": f"2019-0{i % 9 + 1}-01 10:00:00 UTC",
            "Article_title": f"Apple Headline {i}",
            "Stock_symbol": "AAPL",
            "Url": f"https://www.{'benzinga' if i % 2 else 'other'}.com/{i}",
            "Publisher": "x",
            "Article": "body",
        }
        for i in range(10)
    ]
    (tmp_path / "news.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    params = fetch_params(
        source="fnspid",
        columns={"text": "Article_title", "date": "Date"},
        keep_columns=["Stock_symbol"],
        filters=[{"column": "Url", "contains": "benzinga.com"}],
    )
    local = HfDataset(
        path=str(tmp_path), name=None, revision="no-pin-for-a-local-dir", data_files="news.jsonl", split="train"
    )
    frame, rows_read = read_hf_dataset(
        local, ["Article_title", "Date", "Stock_symbol", "Url"], params.filters, batch_rows=3
    )
    # filtered while streaming: only the Benzinga rows are ever held, each with its place in the source
    assert rows_read == 10 and frame["__row"].to_list() == [f"row {i}" for i in range(1, 10, 2)]
    table, counts = normalise(frame, params, "fnspid", rows_read)
    assert table.height == 5 and counts["filtered_out"] == 5 and set(table["Stock_symbol"]) == {"AAPL"}
    assert counts["rows_read"] == 10
    with pytest.raises(PipelineError, match=r"missing column\(s\) \['Title'\]"):
        read_hf_dataset(local, ["Title"])


@pytest.mark.parametrize("date", ["2015-01-05xyz garbage", "2015-02-30", "05/01/2015", "2015-1-5", "20150105"])
def test_a_date_is_read_only_when_the_whole_field_is_a_date(date):
    with pytest.raises(PipelineError, match=rf"f: row 0: unparsable date '{date}'"):
        normalise(raw([("Apple Up", date)]), PARAMS, "f")


@pytest.mark.parametrize(
    "date",
    [
        "2015-01-05",
        "2015-01-05 10:00",
        "2015-01-05 10:00:00 UTC",
        "2015-01-05T10:00:00Z",
        "2015-01-05 10:00:00-04:00",
        " 2015-01-05 ",
    ],
)
def test_whole_field_date_formats_are_accepted(date):
    assert normalise(raw([("Apple Up", date)]), PARAMS, "f")[0]["date"].cast(str).to_list() == ["2015-01-05"]


def test_csv_line_numbers_count_quoted_newlines(tmp_path):
    path = tmp_path / "h.csv"
    path.write_text('title,published\n"Apple\nUp",2015-03-01\n"Tesla\nDown\nHard",2015-03-02\nVisa Up,someday\n')
    with pytest.raises(PipelineError, match=r"h.csv: line 7: unparsable date 'someday'"):
        normalise(read_file(path), PARAMS, str(path))


def test_jsonl_syntax_and_utf8_errors_name_their_line(tmp_path):
    path = tmp_path / "h.jsonl"
    path.write_text('{"title": "A", "published": "2012-01-01"}\n\n{"title": "B", "published": \n')
    with pytest.raises(PipelineError, match=r"h.jsonl: line 3: malformed JSON: Expecting value"):
        read_file(path)
    path.write_bytes(b'{"title": "A", "published": "2012-01-01"}\n{"title": "B\xff", "published": "2012-01-01"}\n')
    with pytest.raises(PipelineError, match=r"h.jsonl: line 2: not UTF-8"):
        read_file(path)


def test_a_filter_on_a_column_the_source_lacks_names_the_file_and_the_key(tmp_path):
    params = fetch_params(
        source="mine",
        columns={"text": "title", "date": "published"},
        filters=[{"column": "Url", "contains": "benzinga.com"}],
    )
    with pytest.raises(PipelineError, match=r"f.csv: missing column\(s\) \['Url'\].*filters"):
        normalise(raw([("Apple Up", "2015-03-01")]), params, "f.csv")


def test_a_csv_cell_longer_than_the_csv_modules_limit_is_read(tmp_path):
    path = tmp_path / "h.csv"
    path.write_text(f'title,published,body\nApple Up,2015-03-01,"{"x" * 200_000}"\nTesla Down,2015-03-02,short\n')
    frame, counts = normalise(read_file(path), PARAMS, str(path))
    assert frame["text"].to_list() == ["Apple Up", "Tesla Down"] and counts["rows_out"] == 2


def test_a_csv_row_with_too_many_fields_names_its_line(tmp_path):
    path = tmp_path / "h.csv"
    path.write_text("title,published\nApple Up,2015-03-01\nTesla, Inc. Down,2015-03-02\n")
    with pytest.raises(PipelineError, match=r"h.csv: line 3: 3 fields, but the header has 2"):
        read_file(path)


@pytest.mark.parametrize("line, found", [("[1, 2]", "list"), ('"just text"', "str"), ("42", "int")])
def test_a_jsonl_line_that_is_not_an_object_names_its_line(tmp_path, line, found):
    path = tmp_path / "h.jsonl"
    path.write_text('{"title": "A", "published": "2012-01-01"}\n' + line + "\n")
    with pytest.raises(PipelineError, match=rf"h.jsonl: line 2: expected a JSON object .*found {found}"):
        read_file(path)


def test_a_nested_json_text_field_is_an_error_not_a_headline(tmp_path):
    path = tmp_path / "h.jsonl"
    path.write_text('{"title": {"en": 1}, "published": "2012-01-01", "meta": [1, 2]}\n')
    with pytest.raises(PipelineError, match=r"h.jsonl: line 1: column 'title' holds .* \(nested JSON\), not text"):
        normalise(read_file(path), PARAMS, str(path))
    path.write_text('{"title": "Apple Up", "published": "2012-01-01", "meta": {"x": 1}}\n')  # unused: fine
    assert normalise(read_file(path), PARAMS, str(path))[0]["text"].to_list() == ["Apple Up"]


def test_a_split_range_holding_no_fetched_headline_stops_fetch_before_anything_is_paid(tmp_path, monkeypatch, caplog):
    """Issue 29: a 2024 feed went through fetch and paid labelling before split said the train range was empty."""
    (tmp_path / "h.csv").write_text(
        "title,published\nApple Up,2024-01-02\nTesla Down,2024-02-10\nVisa Flat,2024-03-05\nNokia Up,2023-06-01\n"
    )
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["fetch"] |= {"path": "h.csv", "columns": {"text": "title", "date": "published"}, "keep_columns": []}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    monkeypatch.chdir(tmp_path)
    shipped = params["split"]["ranges"]
    with pytest.raises(PipelineError) as error:
        fetch.main(["--out", "out.parquet", "--metrics", "m.json"])
    assert str(error.value) == (
        f"fetch: split.ranges.train ({shipped['train']['start']}..{shipped['train']['end']}) and split.ranges.valid "
        f"({shipped['valid']['start']}..{shipped['valid']['end']}) and split.ranges.test "
        f"({shipped['test']['start']}..{shipped['test']['end']}) hold none of the 4 fetched headlines, which span "
        "2023-06-01..2024-03-05; change split.ranges in params.yaml to dates in that span, or what fetch keeps "
        "(fetch.path or fetch.hf_dataset, fetch.filters, fetch.date_range)"
    )
    assert not (tmp_path / "out.parquet").exists() and not (tmp_path / "m.json").exists()

    params["split"]["ranges"] = {
        "train": {"start": "2024-01-01", "end": "2024-01-31"},
        "valid": {"start": "2024-02-01", "end": "2024-02-29"},
        "test": {"start": "2024-03-01", "end": "2024-03-31"},
    }
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    caplog.set_level("INFO")
    fetch.main(["--out", "out.parquet", "--metrics", "m.json"])
    held = (
        "fetch: split.ranges hold train 1, valid 1, test 1 of the 4 fetched headlines (2023-06-01..2024-03-05); "
        "1 outside every range"
    )
    assert held in caplog.messages and pl.read_parquet("out.parquet").height == 4

    # make plan's check of what fetch wrote, after a split.ranges edit that fetch has not seen yet
    caplog.clear()
    fetch.main(["--check-dates", "--out", "out.parquet"])
    assert caplog.messages == [held]
    params["split"]["ranges"]["test"] = {"start": "2025-01-01", "end": "2025-12-31"}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    with pytest.raises(PipelineError, match=r"^fetch: split.ranges.test \(2025-01-01..2025-12-31\) holds none of"):
        fetch.main(["--check-dates", "--out", "out.parquet"])
