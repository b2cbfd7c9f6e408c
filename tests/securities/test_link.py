"""Linking a mention to the symbol valid on its headline's date: renames, reused tickers, ambiguous names, home
markets, written tickers and near-miss spellings, with the shipped params.yaml `link.linker` settings."""

import datetime as dt

import pytest

from stages.securities.link import Candidate, Link, Linker, headline_symbols, written_ticker
from stages.securities.master import Master, Security
from stages.securities.settings import LinkParams
from tests.helpers import shipped_params

D = dt.date.fromisoformat
SHIPPED = LinkParams.model_validate(shipped_params()["link"]).linker


def linker(*rows: Security, **changes) -> Linker:
    return Linker(Master(rows), SHIPPED.model_copy(update=changes))


def link(linker: Linker, headline: str, mention: str, day: str | None, hints: tuple[str, ...] = ()) -> Link:
    start = headline.index(mention)
    return linker.link(mention, start, start + len(mention), headline, D(day) if day else None, hints)


def test_the_shipped_linker_settings_are_the_ones_these_tests_assume():
    assert SHIPPED.model_dump() == {
        "weights": {"ticker": 1.0, "alias": 0.95, "name": 0.9, "prefix": 0.8, "fuzzy": 0.85},
        "markets": {"exchanges": ["NYSE", "NASDAQ", "US"], "other_discount": 0.15},
        "fuzzy": {"scorer": "ratio", "threshold": 92.0},
        "min_score": 0.75,
        "ambiguity_margin": 0.1,
        "top_candidates": 3,
        "not_tickers": SHIPPED.not_tickers,
    }
    assert {"EPS", "OI", "CEO"} <= set(SHIPPED.not_tickers)


# ---- (a) a rename: one security, two symbols ---------------------------------------------------------------------

RENAME = linker(
    Security(symbol="FB", name="Facebook", exchange="NASDAQ", valid_to=D("2022-06-08"), security_id="META"),
    Security(symbol="META", name="Meta Platforms", exchange="NASDAQ", valid_from=D("2022-06-09"), security_id="META"),
)


@pytest.mark.parametrize(
    ("headline", "mention", "day", "symbol", "name"),
    [
        ("Facebook Shares Rise", "Facebook", "2021-01-04", "FB", "Facebook"),
        ("Facebook Shares Rise", "Facebook", "2022-06-08", "FB", "Facebook"),  # the last day of FB
        ("Facebook Shares Rise", "Facebook", "2022-06-09", "META", "Meta Platforms"),  # the first day of META
        ("Facebook Shares Rise", "Facebook", "2023-01-04", "META", "Meta Platforms"),
        ("Meta Platforms Beats Estimates", "Meta Platforms", "2015-03-02", "FB", "Facebook"),  # the new name, back then
        ("Meta Platforms Beats Estimates", "Meta Platforms", "2023-01-04", "META", "Meta Platforms"),
        ("Facebook Shares Rise", "Facebook", None, "META", "Meta Platforms"),  # no date: the open row
    ],
)
def test_a_rename_links_a_name_to_the_symbol_of_the_day(headline, mention, day, symbol, name):
    assert link(RENAME, headline, mention, day) == Link(
        symbol, 0.95, "alias", (Candidate(symbol, name, 0.95, "alias"),)
    )


def test_a_ticker_written_after_the_name_is_looked_up_as_of_the_day():
    # "(FB)" in 2023: the ticker's security under its symbol of the day
    after_rename = link(RENAME, "Facebook (FB) Slides On Ad Warning", "Facebook", "2023-01-04")
    assert after_rename == Link("META", 1.0, "ticker", (Candidate("META", "Meta Platforms", 1.0, "ticker"),))
    before = link(RENAME, "Facebook (FB) Slides On Ad Warning", "Facebook", "2021-01-04")
    assert before == Link("FB", 1.0, "ticker", (Candidate("FB", "Facebook", 1.0, "ticker"),))
    assert link(RENAME, "Why META Is Moving", "META", "2019-05-01").symbol == "FB"


# ---- (b) a reused ticker: one symbol, two securities -------------------------------------------------------------

REUSED = linker(
    Security(symbol="S", name="Sprint", exchange="NYSE", valid_to=D("2020-03-31"), security_id="SPRINT"),
    Security(symbol="S", name="SentinelOne", exchange="NYSE", valid_from=D("2021-06-30"), security_id="SENTINELONE"),
)


def test_a_reused_ticker_links_whichever_company_held_it_that_day():
    assert link(REUSED, "Why S Is Moving", "S", "2019-05-01") == Link(
        "S", 1.0, "ticker", (Candidate("S", "Sprint", 1.0, "ticker"),)
    )
    assert link(REUSED, "Why S Is Moving", "S", "2022-05-02") == Link(
        "S", 1.0, "ticker", (Candidate("S", "SentinelOne", 1.0, "ticker"),)
    )
    assert link(REUSED, "Why S Is Moving", "S", "2020-03-31").candidates[0].name == "Sprint"
    assert link(REUSED, "Why S Is Moving", "S", "2021-06-30").candidates[0].name == "SentinelOne"


def test_a_company_not_listed_that_day_and_a_ticker_nobody_held_link_nothing():
    assert link(REUSED, "Sprint Shares Fall On Merger News", "Sprint", "2022-05-02") == Link(None, 0.0, None, ())
    assert link(REUSED, "Sprint Shares Fall On Merger News", "Sprint", "2019-05-01").symbol == "S"
    assert link(REUSED, "Why S Is Moving", "S", "2020-12-01") == Link(None, 0.0, None, ())  # in the gap
    assert link(REUSED, "SentinelOne Files For IPO", "SentinelOne", "2020-12-01") == Link(None, 0.0, None, ())


# ---- (c) ambiguity -------------------------------------------------------------------------------------------------


def test_a_whole_name_beats_the_first_words_of_another():
    apple = linker(
        Security(symbol="AAPL", name="Apple Inc.", exchange="NASDAQ"),
        Security(symbol="APLE", name="Apple Hospitality REIT", exchange="NYSE"),
    )
    assert link(apple, "Apple Unveils New iPhone", "Apple", "2020-01-02") == Link(
        "AAPL",
        0.95,
        "alias",
        (Candidate("AAPL", "Apple Inc.", 0.95, "alias"), Candidate("APLE", "Apple Hospitality REIT", 0.8, "prefix")),
    )
    # the REIT's own name links it; its first word alone would too, where no company is called just that
    assert (
        link(apple, "Apple Hospitality REIT Raises Dividend", "Apple Hospitality REIT", "2020-01-02").symbol == "APLE"
    )
    alone = linker(Security(symbol="APLE", name="Apple Hospitality REIT", exchange="NYSE"))
    assert link(alone, "Apple Unveils New iPhone", "Apple", "2020-01-02") == Link(
        "APLE", 0.8, "prefix", (Candidate("APLE", "Apple Hospitality REIT", 0.8, "prefix"),)
    )


def test_two_securities_of_one_name_form_on_one_market_leave_the_mention_unlinked_with_both_listed():
    acme = linker(
        Security(symbol="ACM", name="Acme Corp", exchange="NYSE"),
        Security(symbol="ABC", name="Acme", exchange="NYSE"),
    )
    assert link(acme, "Acme Shares Rise", "Acme", "2020-01-02") == Link(
        None,
        0.95,
        "ambiguous",
        (Candidate("ABC", "Acme", 0.95, "alias"), Candidate("ACM", "Acme Corp", 0.95, "alias")),
    )
    # the ticker written after it settles it, though the other's whole name (0.95) is within the margin
    assert link(acme, "Acme (ACM) Shares Rise", "Acme", "2020-01-02") == Link(
        "ACM",
        1.0,
        "ticker",
        (Candidate("ACM", "Acme Corp", 1.0, "ticker"), Candidate("ABC", "Acme", 0.95, "alias")),
    )
    # a bare ticker-shaped mention does not: "HP" is HP Inc.'s name and Helmerich & Payne's ticker
    hp = linker(
        Security(symbol="HPQ", name="HP Inc.", exchange="NYSE"),
        Security(symbol="HP", name="Helmerich & Payne", exchange="NYSE"),
    )
    assert link(hp, "HP Cuts 5,000 Jobs", "HP", "2020-01-02").evidence == "ambiguous"


def test_a_close_second_is_ambiguous_and_only_the_top_candidates_are_listed():
    rows = [
        Security(symbol="A1", name="Apex", exchange="NYSE"),
        Security(symbol="A2", name="Apex Inc", exchange="NASDAQ"),
        Security(symbol="A3", name="Apex Energy", exchange="NYSE"),
        Security(symbol="A4", name="Apex Foods", exchange="NYSE"),
    ]
    found = link(linker(*rows), "Apex Shares Rise", "Apex", "2020-01-02")
    assert found.symbol is None and found.evidence == "ambiguous"
    assert [(c.symbol, c.score) for c in found.candidates] == [("A1", 0.95), ("A2", 0.95), ("A3", 0.8)]
    assert [c.symbol for c in linker(*rows, top_candidates=1).link("Apex", 0, 4, "Apex Up", None).candidates] == ["A1"]
    # one name 0.95 and another 0.9 (a teacher's hint) are within the margin of 0.1
    hinted = linker(
        Security(symbol="AAA", name="Alpha", exchange="NYSE"), Security(symbol="BBB", name="Beta", exchange="NYSE")
    )
    close = link(hinted, "Alpha Beats", "Alpha", "2020-01-02", hints=("Beta",))
    assert close == Link(
        None, 0.95, "ambiguous", (Candidate("AAA", "Alpha", 0.95, "alias"), Candidate("BBB", "Beta", 0.9, "name"))
    )
    no_margin = linker(*hinted.master.securities, ambiguity_margin=0.0)
    assert link(no_margin, "Alpha Beats", "Alpha", "2020-01-02", hints=("Beta",)).symbol == "AAA"


def test_a_teacher_name_hint_links_a_mention_the_master_does_not_know():
    alphabet = linker(Security(symbol="GOOGL", name="Alphabet Inc.", exchange="NASDAQ"))
    assert link(alphabet, "Google Unveils Phone", "Google", "2020-01-02") == Link(None, 0.0, None, ())
    assert link(alphabet, "Google Unveils Phone", "Google", "2020-01-02", hints=("Alphabet",)) == Link(
        "GOOGL", 0.9, "name", (Candidate("GOOGL", "Alphabet Inc.", 0.9, "name"),)
    )


# ---- (d) home markets --------------------------------------------------------------------------------------------


def test_a_security_listed_elsewhere_weighs_less():
    merck = [
        Security(symbol="MRK", name="Merck & Co.", exchange="NYSE", country="United States"),
        Security(symbol="MRK.DE", name="Merck KGaA", aliases=("Merck",), exchange="DE", country="Germany"),
    ]
    assert link(linker(*merck), "Merck Raises Outlook", "Merck", "2020-01-02") == Link(
        "MRK",
        0.95,
        "alias",
        (Candidate("MRK", "Merck & Co.", 0.95, "alias"), Candidate("MRK.DE", "Merck KGaA", 0.8075, "alias")),
    )
    # without the discount the two are one choice
    equal = linker(*merck, markets=SHIPPED.markets.model_copy(update={"other_discount": 0.0}))
    assert link(equal, "Merck Raises Outlook", "Merck", "2020-01-02").evidence == "ambiguous"
    # alone, the German row's prefix weighs 0.8 * 0.85 = 0.68: under min_score, listed but not linked
    german = linker(Security(symbol="MRK.DE", name="Merck KGaA", exchange="DE", country="Germany"))
    assert link(german, "Merck Raises Outlook", "Merck", "2020-01-02") == Link(
        None, 0.68, None, (Candidate("MRK.DE", "Merck KGaA", 0.68, "prefix"),)
    )
    assert link(german, "Merck KGaA Raises Outlook", "Merck KGaA", "2020-01-02").symbol == "MRK.DE"  # 0.8075


# ---- (e) tickers written in the headline --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headline", "mention", "ticker"),
    [
        ("Apple (AAPL) Beats Estimates", "Apple", "AAPL"),  # "(SYM)" right after the mention
        ("Apple ( aapl ) beats estimates", "Apple", "AAPL"),
        ("Berkshire Hathaway (BRK.B) Rises", "Berkshire Hathaway", "BRK.B"),
        ("Apple, (AAPL) Beats", "Apple", None),  # not right after it
        ("Why AAPL Is Moving Today", "AAPL", "AAPL"),  # bare capitals in a mixed-case headline
        ("Unusual Options Activity In BRK-B", "BRK-B", "BRK-B"),
        ("APPLE BEATS ESTIMATES", "APPLE", "APPLE"),  # all caps: the mention as written
        ("why aapl is moving today", "aapl", "AAPL"),  # all lower case: read in capitals
        ("Shares Of aapl Rise", "aapl", None),  # a lowercase word in a mixed-case headline
        ("Apple Beats Estimates", "Apple", None),  # a name, not a symbol's shape
        ("Why Alphabet Is Moving", "Alphabet", None),
        ("Why GOOGLEX Is Moving", "GOOGLEX", None),  # seven letters: too long for a symbol
    ],
)
def test_written_ticker(headline, mention, ticker):
    start = headline.index(mention)
    assert written_ticker(mention, start, start + len(mention), headline) == ticker


# ---- (f) near misses ----------------------------------------------------------------------------------------------


def test_a_near_miss_spelling_links_by_fuzzy_match_with_a_lower_score():
    microsoft = linker(
        Security(symbol="MSFT", name="Microsoft Corporation", exchange="NASDAQ"),
        Security(symbol="MU", name="Micron Technology", exchange="NASDAQ"),
    )
    exact = link(microsoft, "Microsoft Beats Estimates", "Microsoft", "2020-01-02")
    assert exact == Link("MSFT", 0.95, "alias", (Candidate("MSFT", "Microsoft Corporation", 0.95, "alias"),))
    # "microsft" vs "microsoft": ratio 94.12, so 0.85 * 0.9412
    near = link(microsoft, "Microsft Beats Estimates", "Microsft", "2020-01-02")
    assert near == Link("MSFT", 0.8, "fuzzy:ratio", (Candidate("MSFT", "Microsoft Corporation", 0.8, "fuzzy:ratio"),))
    assert near.score < exact.score
    # "mircosoft": ratio 88.9, under the threshold of 90
    assert link(microsoft, "Mircosoft Beats Estimates", "Mircosoft", "2020-01-02") == Link(None, 0.0, None, ())
    # a lower threshold lets it in, weighted by its score
    loose = linker(*microsoft.master.securities, fuzzy=SHIPPED.fuzzy.model_copy(update={"threshold": 85.0}))
    assert link(loose, "Mircosoft Beats Estimates", "Mircosoft", "2020-01-02") == Link(
        "MSFT", 0.7556, "fuzzy:ratio", (Candidate("MSFT", "Microsoft Corporation", 0.7556, "fuzzy:ratio"),)
    )


def test_a_fuzzy_match_is_found_as_of_the_day_too():
    assert link(RENAME, "Facebok Shares Rise", "Facebok", "2023-01-04") == Link(
        "META", 0.7933, "fuzzy:ratio", (Candidate("META", "Meta Platforms", 0.7933, "fuzzy:ratio"),)
    )


def test_headline_symbols_keep_the_order_mentions_first_name_them():
    links = [
        Link("MSFT", 0.95, "alias"),
        Link(None, 0.95, "ambiguous"),
        Link("AAPL", 1.0, "ticker"),
        Link("MSFT", 1.0, "ticker"),
    ]
    assert headline_symbols(links) == ["MSFT", "AAPL"]
    assert headline_symbols([]) == []
