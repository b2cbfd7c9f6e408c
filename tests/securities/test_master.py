"""The security master: CSV, JSONL and parquet read the same rows; every bad row stops with its file and line;
a later file's rows of a security id replace the earlier files' rows of that id; accepted aliases join the rows
of their symbol valid in their period."""

import datetime as dt
import json

import polars as pl
import pytest

from stages.core.errors import InputError
from stages.securities.master import (
    SAVED_LINKER,
    SAVED_MASTER,
    AcceptedAlias,
    Master,
    MasterError,
    Security,
    load_master,
    load_saved_master,
    merge_files,
    name_form,
    read_accepted_aliases,
    read_securities,
    save_master,
)
from stages.securities.settings import LinkParams
from tests.helpers import shipped_params

D = dt.date.fromisoformat
HEADER = "symbol,name,aliases,exchange,country,valid_from,valid_to,security_id\n"
ALIAS_HEADER = "alias,symbol,valid_from,valid_to\n"
ROWS = [
    {
        "symbol": "FB",
        "name": "Facebook",
        "aliases": ["Facebook Inc", "The Facebook"],
        "exchange": "NASDAQ",
        "country": "United States",
        "valid_from": None,
        "valid_to": "2022-06-08",
        "security_id": "META",
    },
    {
        "symbol": "META",
        "name": "Meta Platforms",
        "aliases": [],
        "exchange": "NASDAQ",
        "country": "United States",
        "valid_from": "2022-06-09",
        "valid_to": None,
        "security_id": "META",
    },
    {
        "symbol": "MRK.DE",
        "name": "Merck KGaA",
        "aliases": [],
        "exchange": None,
        "country": "Germany",
        "valid_from": None,
        "valid_to": None,
        "security_id": None,
    },
]
CSV = HEADER + (
    "FB,Facebook,Facebook Inc|The Facebook,NASDAQ,United States,,2022-06-08,META\n"
    "META,Meta Platforms,,NASDAQ,United States,2022-06-09,,META\n"
    "MRK.DE,Merck KGaA,,,Germany,,,\n"
)


def csv_file(path, body: str, header: str = HEADER):
    path.write_text(header + body)
    return path


def plain(securities: list[Security]) -> list[dict]:
    """The rows without where they were read (which names the file)."""
    return [s.model_dump(exclude={"where"}) for s in securities]


def test_csv_jsonl_and_parquet_masters_read_the_same_rows(tmp_path):
    (tmp_path / "m.csv").write_text(CSV)
    (tmp_path / "m.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ROWS) + "\n")  # a blank line is skipped
    frame = pl.DataFrame(ROWS).with_columns(pl.col("valid_from", "valid_to").str.to_date())
    frame.write_parquet(tmp_path / "m.parquet")
    read = {suffix: read_securities(tmp_path / f"m.{suffix}") for suffix in ("csv", "jsonl", "parquet")}
    expected = [
        {
            "symbol": "FB",
            "name": "Facebook",
            "aliases": ("Facebook Inc", "The Facebook"),
            "exchange": "NASDAQ",
            "country": "United States",
            "valid_from": None,
            "valid_to": dt.date(2022, 6, 8),
            "security_id": "META",
        },
        {
            "symbol": "META",
            "name": "Meta Platforms",
            "aliases": (),
            "exchange": "NASDAQ",
            "country": "United States",
            "valid_from": dt.date(2022, 6, 9),
            "valid_to": None,
            "security_id": "META",
        },
        {
            "symbol": "MRK.DE",
            "name": "Merck KGaA",
            "aliases": (),
            "exchange": None,
            "country": "Germany",
            "valid_from": None,
            "valid_to": None,
            "security_id": "MRK.DE",  # blank: the symbol
        },
    ]
    assert plain(read["csv"]) == plain(read["jsonl"]) == plain(read["parquet"]) == expected
    assert [s.where for s in read["csv"]] == [f"{tmp_path / 'm.csv'}:{n}" for n in (2, 3, 4)]
    assert [s.where for s in read["jsonl"]] == [f"{tmp_path / 'm.jsonl'}:{n}" for n in (1, 2, 3)]
    assert [s.where for s in read["parquet"]] == [f"{tmp_path / 'm.parquet'} row {n}" for n in (1, 2, 3)]


def test_name_forms_drop_case_legal_endings_and_a_leading_the():
    assert name_form("The Procter & Gamble Company") == "procter & gamble"
    assert name_form("Merck & Co., Inc.") == "merck"
    assert name_form("Apple Inc.") == "apple"
    assert name_form("The Trade Desk") == "trade desk"
    assert Security(symbol="FB", name="Facebook, Inc.", aliases="The Facebook|FB Inc").forms() == {"facebook", "fb"}


@pytest.mark.parametrize(
    ("name", "body", "where", "problem"),
    [
        (
            "bad_date.csv",
            "AAPL,Apple,,NASDAQ,,,,\nX,Xco,,,,2020-13-01,,\n",
            3,
            "valid_from: '2020-13-01' is not allowed: expected a real date written YYYY-MM-DD",
        ),
        (
            "loose_date.csv",
            "X,Xco,,,,,2020/01/31,\n",
            2,
            "valid_to: '2020/01/31' is not allowed: expected a real date written YYYY-MM-DD",
        ),
        (
            "reversed.csv",
            "AAPL,Apple,,NASDAQ,,2021-01-01,2020-01-01,\n",
            2,
            "valid_from 2021-01-01 is after valid_to 2020-01-01",
        ),
        ("no_symbol.csv", "AAPL,Apple,,,,,,\n,Orphan Co,,NYSE,,,,\n", 3, "symbol: None is not allowed"),
        ("blank_name.csv", "AAPL,   ,,,,,,\n", 2, "name: None is not allowed"),
    ],
)
def test_a_bad_csv_row_names_its_file_and_line(tmp_path, name, body, where, problem):
    path = csv_file(tmp_path / name, body)
    with pytest.raises(MasterError) as error:
        read_securities(path)
    message = str(error.value)
    assert message.startswith(f"{path}:{where}: {problem}")
    assert "\n" not in message


def test_an_unknown_or_missing_column_names_its_line(tmp_path):
    extra = csv_file(tmp_path / "extra.csv", "AAPL,Apple,Technology\n", header="symbol,name,sector\n")
    with pytest.raises(MasterError, match=r"extra\.csv:2: unknown column 'sector' \(allowed: symbol, name, aliases"):
        read_securities(extra)
    (tmp_path / "missing.jsonl").write_text('{"symbol": "AAPL", "name": "Apple"}\n{"name": "Orphan Co"}\n')
    with pytest.raises(MasterError, match=r"missing\.jsonl:2: missing 'symbol'$"):
        read_securities(tmp_path / "missing.jsonl")


def test_a_malformed_jsonl_line_and_a_non_object_name_their_line(tmp_path):
    (tmp_path / "broken.jsonl").write_text('{"symbol": "AAPL", "name": "Apple"}\n\n{"symbol": "X", \n')
    with pytest.raises(MasterError, match=r"broken\.jsonl:3: malformed line: "):
        read_securities(tmp_path / "broken.jsonl")
    (tmp_path / "list.jsonl").write_text('["AAPL", "Apple"]\n')
    with pytest.raises(MasterError, match=r"list\.jsonl:1: malformed line: expected a JSON object$"):
        read_securities(tmp_path / "list.jsonl")


def test_a_bad_parquet_row_names_its_row(tmp_path):
    path = tmp_path / "m.parquet"
    pl.DataFrame(
        {"symbol": ["AAPL", "X"], "name": ["Apple", "Xco"], "valid_from": ["2020-01-01", "soon"]}
    ).write_parquet(path)
    with pytest.raises(MasterError, match=rf"^{path} row 2: valid_from: 'soon' is not allowed"):
        read_securities(path)


def test_an_unknown_extension_and_a_missing_file_are_named(tmp_path):
    (tmp_path / "master.xlsx").write_text("symbol,name\nAAPL,Apple\n")
    with pytest.raises(MasterError, match=r"master\.xlsx: unknown format: expected \.csv, \.jsonl or \.parquet$"):
        read_securities(tmp_path / "master.xlsx")
    with pytest.raises(InputError, match=r"nowhere\.csv: not found \(a master file named in params\.yaml"):
        read_securities(tmp_path / "nowhere.csv")


def test_overlapping_periods_of_one_symbol_name_both_rows(tmp_path):
    first = csv_file(tmp_path / "a.csv", "S,Sprint,,NYSE,,,2020-03-31,SPRINT\n")
    second = csv_file(tmp_path / "b.csv", "AAPL,Apple,,NASDAQ,,,,\nS,SentinelOne,,NYSE,,2020-03-31,,SENTINELONE\n")
    with pytest.raises(MasterError) as error:
        load_master([first, second], None)
    assert str(error.value) == (
        f"{second}:3: symbol S also names 'Sprint' ({first}:2) in an overlapping period: give each row "
        "valid_from/valid_to"
    )
    # the day after ends the overlap: one ticker, two companies, one at a time
    csv_file(second, "AAPL,Apple,,NASDAQ,,,,\nS,SentinelOne,,NYSE,,2020-04-01,,SENTINELONE\n")
    master = load_master([first, second], None)
    assert [(s.name, s.security_id) for s in master.by_symbol["S"]] == [
        ("Sprint", "SPRINT"),
        ("SentinelOne", "SENTINELONE"),
    ]


def test_two_open_rows_of_one_symbol_overlap(tmp_path):
    path = csv_file(tmp_path / "m.csv", "AAPL,Apple,,NASDAQ,,,,\nAAPL,Apple Computer,,NASDAQ,,,,OLDAPPLE\n")
    with pytest.raises(MasterError, match=rf"^{path}:3: symbol AAPL also names 'Apple' \({path}:2\)"):
        load_master([path], None)


def test_a_later_file_replaces_the_rows_of_its_security_ids(tmp_path):
    package = csv_file(
        tmp_path / "package.csv",
        "META,Meta Platforms,,NASDAQ,,,,\nAAPL,Apple,,NASDAQ,,,,\n"
        "BBRY,BlackBerry,,NASDAQ,,,,BB\nBB,BlackBerry,,NYSE,,,,X\n",
    )
    supplement = csv_file(
        tmp_path / "supplement.csv",
        "FB,Facebook,,NASDAQ,,,2022-06-08,META\nMETA,Meta Platforms,,NASDAQ,,2022-06-09,,META\n"
        "BBRY,BlackBerry,,NASDAQ,,,2017-10-15,BB\nBB,BlackBerry,,NYSE,,2017-10-16,,BB\n",
    )
    merged = merge_files([read_securities(package), read_securities(supplement)])
    # package's META (id META) and BBRY (id BB) are gone; its AAPL and BB (id X) stay, ahead of the supplement's rows
    assert [(s.symbol, s.security_id, s.where.rsplit("/", 1)[1]) for s in merged] == [
        ("AAPL", "AAPL", "package.csv:3"),
        ("BB", "X", "package.csv:5"),
        ("FB", "META", "supplement.csv:2"),
        ("META", "META", "supplement.csv:3"),
        ("BBRY", "BB", "supplement.csv:4"),
        ("BB", "BB", "supplement.csv:5"),
    ]
    # the package's open BB (id X) is not replaced, so it overlaps the supplement's BB
    with pytest.raises(MasterError, match=r"supplement\.csv:5: symbol BB also names 'BlackBerry' \(.*package\.csv:5\)"):
        load_master([package, supplement], None)


def test_merge_keeps_rows_of_one_file_together_and_later_files_win_over_several_files():
    def row(symbol, name, security_id=""):
        return Security(symbol=symbol, name=name, security_id=security_id)

    first = [row("A", "Alpha"), row("B", "Beta")]
    second = [row("A", "Alpha Corp"), row("A2", "Alpha Two", "A")]
    third = [row("B", "Beta Two")]
    merged = merge_files([first, second, third])
    assert [(s.symbol, s.name) for s in merged] == [("A", "Alpha Corp"), ("A2", "Alpha Two"), ("B", "Beta Two")]
    assert merge_files([]) == []


def test_master_indexes_symbols_forms_prefixes_and_ids(tmp_path):
    path = csv_file(
        tmp_path / "m.csv",
        "MU,Micron Technology Inc.,Micron Tech,NASDAQ,,,,\nFB,Facebook,,NASDAQ,,,2022-06-08,META\n"
        "META,Meta Platforms,,NASDAQ,,2022-06-09,,META\n",
    )
    master = load_master([path], None)
    assert sorted(master.by_symbol) == ["FB", "META", "MU"]
    assert sorted(master.by_form) == ["facebook", "meta platforms", "micron tech", "micron technology"]
    assert sorted(master.by_prefix) == ["meta", "micron"]
    assert [s.symbol for s in master.by_id["META"]] == ["FB", "META"]
    assert master.date_range() == (dt.date(2022, 6, 9), dt.date(2022, 6, 8))
    fb = master.by_symbol["FB"]
    assert [s.symbol for s in master.as_of(fb, dt.date(2021, 1, 4))] == ["FB"]
    assert [s.symbol for s in master.as_of(fb, dt.date(2023, 1, 4))] == ["META"]  # the same company's row then
    assert [s.symbol for s in master.as_of(fb, None)] == ["META"]  # no date: the open row
    assert [s.symbol for s in master.as_of(master.by_symbol["MU"], dt.date(1990, 1, 1))] == ["MU"]


def test_accepted_aliases_join_the_rows_valid_in_their_period(tmp_path):
    master_file = csv_file(
        tmp_path / "m.csv",
        "S,Sprint,,NYSE,,,2020-03-31,SPRINT\nS,SentinelOne,,NYSE,,2021-06-30,,SENTINELONE\nAAPL,Apple,,NASDAQ,,,,\n",
    )
    aliases = csv_file(
        tmp_path / "accepted.csv",
        "sentinel one,S,2022-01-01,\nsprint nextel,S,,2019-12-31\napple computer,AAPL,,\n",
        header=ALIAS_HEADER,
    )
    assert read_accepted_aliases(aliases) == [
        AcceptedAlias("sentinel one", "S", dt.date(2022, 1, 1), None, f"{aliases}:2"),
        AcceptedAlias("sprint nextel", "S", None, dt.date(2019, 12, 31), f"{aliases}:3"),
        AcceptedAlias("apple computer", "AAPL", None, None, f"{aliases}:4"),
    ]
    master = load_master([master_file], aliases)
    assert {s.name: s.aliases for s in master.securities} == {
        "Sprint": ("sprint nextel",),
        "SentinelOne": ("sentinel one",),
        "Apple": ("apple computer",),
    }
    assert [s.name for s in master.by_form["sentinel one"]] == ["SentinelOne"]
    assert [s.name for s in master.by_form["apple computer"]] == ["Apple"]
    assert "apple" not in master.by_prefix  # a prefix of "apple computer", but a whole form of the same row
    # an alias spanning both holders of S joins both
    both = csv_file(tmp_path / "both.csv", "ticker s,S,2019-01-01,2022-01-01\n", header=ALIAS_HEADER)
    assert [s.name for s in load_master([master_file], both).by_form["ticker s"]] == ["Sprint", "SentinelOne"]


def test_an_alias_joins_only_the_row_of_its_period_when_one_security_renames_under_one_symbol(tmp_path):
    master_file = csv_file(tmp_path / "m.csv", "X,Old Co,,NYSE,,,2015-12-31,\nX,New Co,,NYSE,,2016-01-01,,\n")
    aliases = csv_file(tmp_path / "a.csv", "newco,X,2017-01-01,\n", header=ALIAS_HEADER)
    master = load_master([master_file], aliases)
    assert {s.name: s.aliases for s in master.securities} == {"Old Co": (), "New Co": ("newco",)}


def test_an_accepted_alias_whose_symbol_has_no_row_in_its_period_names_its_line(tmp_path):
    master_file = csv_file(tmp_path / "m.csv", "S,Sprint,,NYSE,,,2020-03-31,SPRINT\n")
    gap = csv_file(tmp_path / "gap.csv", "sprint,S,,\nsentinel,S,2020-12-01,\n", header=ALIAS_HEADER)
    with pytest.raises(MasterError) as error:
        load_master([master_file], gap)
    assert str(error.value) == f"{gap}:3: symbol S is in no master row of that period"


def test_an_accepted_alias_of_a_symbol_the_master_lacks_adds_that_security(tmp_path):
    master_file = csv_file(tmp_path / "m.csv", "S,Sprint,,NYSE,,,2020-03-31,SPRINT\n")
    learnt = csv_file(
        tmp_path / "learnt.csv", "amerisourcebergen,ABC,,2023-08-29\namerisource,ABC,,\n", header=ALIAS_HEADER
    )
    master = load_master([master_file], learnt)
    [added] = master.by_symbol["ABC"]
    assert (added.name, added.aliases, added.valid_to, added.exchange, added.security_id) == (
        "amerisourcebergen",
        ("amerisource",),
        D("2023-08-29"),
        None,
        "ABC",
    )
    assert master.by_form["amerisource"] == [added] and len(master.by_symbol["S"]) == 1


@pytest.mark.parametrize(
    ("header", "body", "problem"),
    [
        (ALIAS_HEADER, "google,,,\n", "needs an alias and a symbol"),
        (ALIAS_HEADER, " ,GOOGL,,\n", "needs an alias and a symbol"),
        (ALIAS_HEADER, "google,GOOGL,2020-02-30,\n", "valid_from/valid_to: expected a real date written YYYY-MM-DD"),
        ("alias,symbol,note\n", "google,GOOGL,ok\n", "unknown column(s) ['note'] (allowed: alias, symbol, valid_from"),
    ],
)
def test_a_bad_accepted_alias_names_its_line(tmp_path, header, body, problem):
    path = csv_file(tmp_path / "aliases.csv", body, header=header)
    with pytest.raises(MasterError) as error:
        read_accepted_aliases(path)
    assert str(error.value).startswith(f"{path}:2: {problem}")


def test_an_accepted_alias_with_its_dates_reversed_names_its_line(tmp_path):
    master_file = csv_file(tmp_path / "m.csv", "S,Sprint,,NYSE,,,2020-03-31,SPRINT\n")
    aliases = csv_file(tmp_path / "a.csv", "sprint nextel,S,2019-05-01,2019-01-01\n", header=ALIAS_HEADER)
    with pytest.raises(MasterError, match=rf"^{aliases}:2: "):
        load_master([master_file], aliases)


def test_an_empty_accepted_aliases_file_and_none_leave_the_master_as_read(tmp_path):
    master_file = csv_file(tmp_path / "m.csv", "AAPL,Apple,Apple Inc,NASDAQ,,,,\n")
    empty = csv_file(tmp_path / "a.csv", "", header=ALIAS_HEADER)
    assert plain(load_master([master_file], empty).securities) == plain(load_master([master_file], None).securities)
    assert load_master([master_file], None).securities[0].aliases == ("Apple Inc",)
    with pytest.raises(InputError, match=r"missing\.csv: not found \(params\.yaml link\.accepted_aliases"):
        load_master([master_file], tmp_path / "missing.csv")


def test_master_rows_are_sorted_by_symbol_then_start():
    rows = [
        Security(symbol="S", name="SentinelOne", valid_from=dt.date(2021, 6, 30), security_id="SENTINELONE"),
        Security(symbol="AAPL", name="Apple"),
        Security(symbol="S", name="Sprint", valid_to=dt.date(2020, 3, 31), security_id="SPRINT"),
    ]
    assert [s.name for s in Master(rows).securities] == ["Apple", "Sprint", "SentinelOne"]


def test_a_saved_master_loads_as_linked_and_saves_to_the_same_bytes(tmp_path):
    (tmp_path / "m.csv").write_text(CSV)
    aliases = csv_file(tmp_path / "a.csv", "the social network,FB,,2020-01-01\n", header=ALIAS_HEADER)
    master = load_master([tmp_path / "m.csv"], aliases)
    settings = LinkParams.model_validate(shipped_params()["link"]).linker
    save_master(master, settings, tmp_path / "bundle")
    loaded, raw = load_saved_master(tmp_path / "bundle")
    assert plain(loaded.securities) == plain(master.securities)
    assert loaded.by_symbol["FB"][0].aliases == ("Facebook Inc", "The Facebook", "the social network")
    assert type(settings).model_validate(raw) == settings
    save_master(loaded, settings, tmp_path / "again")
    for name in (SAVED_MASTER, SAVED_LINKER):
        assert (tmp_path / "again" / name).read_bytes() == (tmp_path / "bundle" / name).read_bytes()
