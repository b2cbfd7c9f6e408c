"""The offline security master is the pinned package's constituents, as scripts/build_master.py writes them."""

from __future__ import annotations

from scripts import build_master
from stages.securities.master import read_securities


def test_the_committed_master_is_what_the_pinned_package_gives():
    assert build_master.main(["--check"]) == 0


def test_a_company_gets_its_us_listing_one_row_per_symbol_and_the_first_claim_keeps_a_symbol():
    companies = [
        {"name": "Sony", "symbol": "6758.T", "country": "Japan", "symbols": [{"google": "NYSE:SONY"}], "isins": []},
        {"name": "Siemens", "symbol": "SIE.DE", "country": "Germany", "symbols": [{"google": "FRA:SIE"}]},
        {"name": "Chipotle", "symbol": "CMG", "country": "Newport Beach, California", "isins": ["US1696561059"]},
        {"name": "Aperam", "symbol": "APAM", "country": "Luxembourg"},
        {"name": "Artisan Partners", "symbol": "APAM", "country": "United States"},
        {"name": "No Symbol", "country": "France"},
    ]
    rows, skipped = build_master.master_rows(companies)
    assert [(r["symbol"], r["name"], r["exchange"], r["country"]) for r in rows] == [
        ("APAM", "Aperam", "", "Luxembourg"),
        ("CMG", "Chipotle", "US", ""),  # a US ISIN; a city is no country
        ("SIE.DE", "Siemens", "DE", "Germany"),  # the market of its Yahoo symbol
        ("SONY", "Sony", "NYSE", "Japan"),
    ]
    assert skipped == {"no_symbol": 1, "symbol_taken": 1}


def test_the_written_master_reads_back_as_a_valid_master(tmp_path):
    rows, _ = build_master.master_rows(
        [{"name": "Apple Inc.", "symbol": "AAPL", "symbols": [{"google": "NASDAQ:AAPL"}]}]
    )
    path = tmp_path / "securities.csv"
    path.write_text(build_master.render(rows))
    [apple] = read_securities(path)
    assert (apple.symbol, apple.name, apple.exchange, apple.security_id, apple.valid_from) == (
        "AAPL",
        "Apple Inc.",
        "NASDAQ",
        "AAPL",
        None,
    )
