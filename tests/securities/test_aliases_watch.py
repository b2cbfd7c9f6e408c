"""Alias proposals from the feed's own symbols, and the new-name watch: names first seen after the training data
head the review queue, which keeps only its most urgent headlines."""

import datetime as dt

import pytest

from stages.securities.aliases import Cooccurrence, Proposal, names_security, propose
from stages.securities.master import Master, Security
from stages.securities.settings import AliasProposals, LinkParams
from stages.securities.watch import Flagged, NameHistory, Watch
from tests.helpers import shipped_params

D = dt.date.fromisoformat
RULES = LinkParams.model_validate(shipped_params()["link"]).aliases


def test_the_shipped_proposal_rules_are_the_ones_these_tests_assume():
    assert RULES == AliasProposals(min_count=3, min_precision=0.6)


def feed_counts() -> Cooccurrence:
    counts = Cooccurrence()
    meetings = [
        # (name forms of a headline, its feed symbol, its date)
        ({"google"}, "GOOGL", "2016-03-01"),
        ({"google", "pixel"}, "GOOGL", "2015-01-02"),
        ({"google"}, "GOOGL", "2019-07-01"),
        ({"google"}, "GOOGL", "2017-05-05"),
        ({"google"}, "GOOG", "2018-01-01"),  # 4 of google's 5: precision 0.8
        ({"alphabet"}, "GOOGL", "2016-01-01"),
        ({"alphabet"}, "GOOGL", "2016-01-02"),
        ({"alphabet"}, "GOOGL", "2016-01-03"),  # the master links it already
        ({"fb"}, "FB", "2012-01-01"),
        ({"fb"}, "FB", "2012-01-02"),
        ({"fb"}, "FB", "2012-01-03"),
        ({"fb"}, "META", "2023-01-01"),
        ({"fb"}, "META", "2023-01-02"),
        ({"fb"}, "META", "2023-01-03"),  # 3 of 6 each: precision 0.5
        ({"tesla motors"}, "TSLA", "2011-01-01"),
        ({"tesla motors"}, "TSLA", "2011-02-01"),
        ({"tesla motors"}, "TSLA", "2011-03-01"),
        ({"xyz"}, "XYZ", "2020-01-01"),
        ({"xyz"}, "XYZ", "2020-01-02"),
        ({"xyz"}, "XYZ", "2020-01-03"),
        ({"xyz"}, "SQ", "2020-01-04"),
        ({"xyz"}, "SQ", "2020-01-05"),  # 3 of 5: precision 0.6, just enough
        ({"rare"}, "RARE", "2020-01-01"),
        ({"rare"}, "RARE", "2020-01-02"),  # twice only
    ]
    for forms, symbol, day in meetings:
        counts.add(forms, symbol, D(day))
    return counts


def test_cooccurrence_counts_headlines_per_name_and_symbol_with_their_dates():
    counts = feed_counts()
    assert counts.names["google"] == 5 and counts.names["pixel"] == 1 and counts.names["fb"] == 6
    assert counts.pairs[("google", "GOOGL")] == 4 and counts.pairs[("google", "GOOG")] == 1
    assert counts.dates[("google", "GOOGL")] == (D("2015-01-02"), D("2019-07-01"))
    assert counts.dates[("google", "GOOG")] == (D("2018-01-01"), D("2018-01-01"))


# GOOGL's master name is Alphabet ("google" does not name it by its first word); XYZ is no master symbol
MASTER = Master(
    [
        Security(symbol="GOOGL", name="Alphabet Inc."),
        Security(symbol="TSLA", name="Tesla, Inc."),
        Security(symbol="RARE", name="Ultragenyx"),
    ]
)


def test_names_security_compares_the_first_words_first_letters():
    rows = [Security(symbol="AAP", name="Advance Auto Parts")]
    assert names_security("advanced auto", rows) and names_security("advance", rows)
    assert not names_security("autozone", rows) and not names_security("", rows) and not names_security("adv", [])


def test_proposals_meet_the_rules_skip_what_the_master_links_and_come_most_frequent_first():
    asked = []

    def links_now(form: str, day: dt.date) -> str | None:
        asked.append((form, day))
        return {"alphabet": "GOOGL", "tesla motors": "TSM"}.get(form)

    proposals = propose(feed_counts(), RULES, MASTER, links_now)
    assert proposals == [
        Proposal("google", "GOOGL", 4, 5, 0.8, D("2015-01-02"), D("2019-07-01"), "", False, False),
        Proposal("tesla motors", "TSLA", 3, 3, 1.0, D("2011-01-01"), D("2011-03-01"), "TSM", True, False),
        Proposal("xyz", "XYZ", 3, 5, 0.6, D("2020-01-01"), D("2020-01-03"), "", False, True),
    ]
    # the linker is asked as of the last day the name met the symbol, only for names meeting the rules
    assert sorted(asked) == [
        ("alphabet", D("2016-01-03")),
        ("google", D("2019-07-01")),
        ("tesla motors", D("2011-03-01")),
        ("xyz", D("2020-01-03")),
    ]


def test_stricter_rules_propose_fewer_names():
    stricter = AliasProposals(min_count=4, min_precision=0.6)
    assert [p.alias for p in propose(feed_counts(), stricter, MASTER, lambda form, day: None)] == ["google"]
    precise = AliasProposals(min_count=1, min_precision=0.9)
    assert [(p.alias, p.symbol) for p in propose(feed_counts(), precise, MASTER, lambda form, day: None)] == [
        ("alphabet", "GOOGL"),
        ("tesla motors", "TSLA"),
        ("rare", "RARE"),
        ("pixel", "GOOGL"),
    ]


# ---- the new-name watch ----------------------------------------------------------------------------------------

CUTOFF = D("2016-12-31")
# (id, date, text, name forms of its mentions, whether each was linked)
FEED = [
    ("h01", "2015-05-01", "Apple Rises", ["apple"], [True]),
    ("h02", "2016-03-01", "Google Falls", ["google"], [False]),
    ("h03", "2017-01-05", "Zorblax Soars", ["zorblax"], [False]),
    ("h04", "2017-01-20", "Zorblax And Quux Merge", ["zorblax", "quux"], [True, False]),
    ("h05", "2017-02-03", "Zorblax Beats Zorblax Estimates", ["zorblax", "zorblax"], [True, True]),
    ("h06", "2017-02-10", "Tesla And Google Slide", ["tesla", "google"], [True, True]),
    ("h07", "2017-03-01", "Markets Calm", [], []),
]


def watched(queue_size: int, feed=FEED) -> Watch:
    history = NameHistory(CUTOFF, known={"tesla"})  # tesla: in the training labels
    for _, day, _, names, _ in feed:
        history.add(D(day), names + [""])  # a mention without a name form counts for nothing
    watch = Watch(history, queue_size)
    for id_, day, text, names, linked in feed:
        watch.add(id_, D(day), text, names, linked)
    return watch


def test_name_history_counts_headlines_naming_each_name_first_seen_after_the_cutoff():
    history = NameHistory(CUTOFF, known={"tesla"})
    for _, day, _, names, _ in FEED:
        history.add(D(day), names)
    assert history.known == {"tesla", "apple", "google"}
    assert dict(history.later) == {"zorblax": 3, "quux": 1, "tesla": 1, "google": 1}
    assert dict(history.new_names()) == {"zorblax": 3, "quux": 1}


def test_names_first_seen_after_the_cutoff_head_the_summary_and_the_queue():
    watch = watched(queue_size=10)
    summary = watch.summary(top=5)
    assert summary["totals"] == {
        "cutoff": "2016-12-31",
        "headlines": 7,
        "mentions": 9,
        "unlinked_mentions": 3,
        "new_name_mentions": 5,
        "new_names": 2,
        "flagged_headlines": 4,
        "top_new_names": [["zorblax", 3], ["quux", 1]],
    }
    assert watch.queue() == [
        Flagged("h04", D("2017-01-20"), "Zorblax And Quux Merge", ("zorblax", "quux"), 1),
        Flagged("h03", D("2017-01-05"), "Zorblax Soars", ("zorblax",), 1),
        Flagged("h05", D("2017-02-03"), "Zorblax Beats Zorblax Estimates", ("zorblax",), 0),
        Flagged("h02", D("2016-03-01"), "Google Falls", (), 1),
    ]
    assert watch.summary(top=1)["totals"]["top_new_names"] == [["zorblax", 3]]


def test_the_watch_counts_each_month():
    months = watched(queue_size=10).summary(top=5)["months"]
    assert list(months) == ["2015-05", "2016-03", "2017-01", "2017-02", "2017-03"]
    assert months == {
        "2015-05": {"headlines": 1, "mentions": 1, "unlinked_mentions": 0, "new_name_mentions": 0, "top_new_names": []},
        "2016-03": {"headlines": 1, "mentions": 1, "unlinked_mentions": 1, "new_name_mentions": 0, "top_new_names": []},
        "2017-01": {
            "headlines": 2,
            "mentions": 3,
            "unlinked_mentions": 2,
            "new_name_mentions": 3,
            "top_new_names": [["zorblax", 2], ["quux", 1]],
        },
        "2017-02": {
            "headlines": 2,
            "mentions": 4,
            "unlinked_mentions": 0,
            "new_name_mentions": 2,  # zorblax twice in one headline: two mentions, one headline
            "top_new_names": [["zorblax", 1]],
        },
        "2017-03": {"headlines": 1, "mentions": 0, "unlinked_mentions": 0, "new_name_mentions": 0, "top_new_names": []},
    }


@pytest.mark.parametrize("order", ["as_fed", "reversed"])
def test_the_queue_is_bounded_and_keeps_the_most_urgent(order):
    feed = FEED if order == "as_fed" else FEED[::-1]
    watch = watched(queue_size=2, feed=feed)
    assert [f.id for f in watch.queue()] == ["h04", "h03"]
    assert watch.summary(top=5)["totals"]["flagged_headlines"] == 4  # all flagged, two kept
    assert [f.id for f in watched(queue_size=1, feed=feed).queue()] == ["h04"]


def test_ties_go_to_the_earlier_headline_then_the_smaller_id():
    watch = Watch(NameHistory(CUTOFF), queue_size=2)
    for id_, day in [("c", "2018-01-02"), ("b", "2018-01-01"), ("a", "2018-01-02"), ("d", "2018-01-01")]:
        watch.add(id_, D(day), "Unknown Co Falls", ["unknown co"], [False])
    assert [(f.id, f.date) for f in watch.queue()] == [("b", D("2018-01-01")), ("d", D("2018-01-01"))]
    same_day = Watch(NameHistory(CUTOFF), queue_size=1)
    for id_ in ["0b", "0c", "0a", "0d"]:
        same_day.add(id_, D("2018-01-02"), "Unknown Co Falls", ["unknown co"], [False])
    assert [f.id for f in same_day.queue()] == ["0a"]


def test_a_tie_keeps_the_smaller_id_when_one_id_is_a_prefix_of_the_other():
    watch = Watch(NameHistory(CUTOFF), queue_size=1)
    for id_ in ["ab", "a"]:
        watch.add(id_, D("2018-01-02"), "Unknown Co Falls", ["unknown co"], [False])
    assert [f.id for f in watch.queue()] == ["a"]


def test_names_before_the_cutoff_are_never_new_even_when_unseen_before():
    history = NameHistory(CUTOFF)
    history.add(D("2017-06-01"), ["initech"])
    watch = Watch(history, queue_size=5)
    watch.add("x1", D("2016-06-01"), "Initech Rises", ["initech"], [True])  # before the cutoff: not new, linked
    watch.add("x2", D("2017-06-01"), "Initech Rises", ["initech"], [True])
    assert [(f.id, f.new_names) for f in watch.queue()] == [("x2", ("initech",))]
    assert watch.summary(top=5)["totals"]["new_name_mentions"] == 1
