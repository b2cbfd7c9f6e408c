from stages.core.metrics import entity_scores
from stages.core.spans import (
    as_spans,
    char_to_token_spans,
    clean_mention,
    locate,
    longest_first,
    token_to_char_span,
    word_tokens,
)


def spans_of(text, mentions, occurrences="all"):
    found = locate(text, mentions, occurrences)
    return [s["text"] for s in as_spans(text, longest_first(o for hits in found.values() for o in hits))]


def test_exact_then_case_insensitive_match():
    assert locate("APPLE SHARES UP AS MSFT SLIPS", ["Apple", "MSFT"]) == {"Apple": [(0, 5)], "MSFT": [(19, 23)]}


def test_exact_match_preferred_over_case_insensitive():
    assert locate("target beats Target estimates", ["Target"]) == {"Target": [(13, 19)]}


def test_ticker_in_parentheses_and_possessive():
    assert spans_of("Apple's CEO Speaks (AAPL)", ["(AAPL)", "Apple's"]) == ["Apple", "AAPL"]
    assert clean_mention(" 'Tesla's' ") == "Tesla"
    assert clean_mention("Apple Inc.") == "Apple Inc"  # trailing punctuation, as candidates leave it out


def test_word_boundaries_and_hallucinations():
    assert locate("Gaps In Coverage As Gold Rises", ["Gap", "AAPL", "()"]) == {"Gap": [], "AAPL": [], "()": []}


def test_all_or_first_occurrence():
    text = "Tesla Beats; Tesla Rises"
    assert locate(text, ["Tesla"], "all") == {"Tesla": [(0, 5), (13, 18)]}
    assert locate(text, ["Tesla"], "first") == {"Tesla": [(0, 5)]}


def test_overlapping_mentions_keep_the_longest():
    assert spans_of("Bank of America Gains", ["America", "Bank of America"]) == ["Bank of America"]


def test_char_spans_round_trip_through_word_tokens():
    text = "AT&T's Deal With T-Mobile (TMUS)"
    tokens = word_tokens(text)
    found = locate(text, ["AT&T", "T-Mobile", "TMUS"])
    spans = as_spans(text, longest_first(o for hits in found.values() for o in hits))
    token_spans = char_to_token_spans(tokens, spans)
    assert [token_to_char_span(text, tokens, a, b)["text"] for a, b in token_spans] == ["AT&T", "T-Mobile", "TMUS"]


def test_entity_scores_count_exact_spans_only():
    gold = [[{"start": 0, "end": 5}], [{"start": 0, "end": 4}, {"start": 10, "end": 14}], []]
    pred = [[{"start": 0, "end": 5}], [{"start": 0, "end": 3}], [{"start": 1, "end": 2}]]
    scores = entity_scores(gold, pred)
    assert (scores["tp"], scores["fp"], scores["fn"]) == (1, 2, 2)
    assert scores["precision"] == round(1 / 3, 4) and scores["recall"] == round(1 / 3, 4)
