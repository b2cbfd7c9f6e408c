from stages.common.metrics import entity_scores
from stages.common.spans import align, char_to_token_spans, clean_mention, token_to_char_span, word_tokens


def texts(spans):
    return [s["text"] for s in spans]


def test_exact_then_case_insensitive_match():
    spans, missing = align("APPLE SHARES UP AS MSFT SLIPS", ["Apple", "MSFT"])
    assert texts(spans) == ["APPLE", "MSFT"] and missing == []


def test_exact_match_preferred_over_case_insensitive():
    spans, _ = align("target beats Target estimates", ["Target"])
    assert [(s["start"], s["end"]) for s in spans] == [(13, 19)]


def test_ticker_in_parentheses_and_possessive():
    text = "Apple's CEO Speaks (AAPL)"
    spans, missing = align(text, ["(AAPL)", "Apple's"])
    assert texts(spans) == ["Apple", "AAPL"] and missing == []
    assert clean_mention(" 'Tesla's' ") == "Tesla"


def test_word_boundaries_and_hallucinations():
    spans, missing = align("Gaps In Coverage As Gold Rises", ["Gap", "AAPL"])
    assert spans == [] and missing == ["Gap", "AAPL"]


def test_all_or_first_occurrence():
    text = "Tesla Beats; Tesla Rises"
    assert len(align(text, ["Tesla"], "all")[0]) == 2
    assert len(align(text, ["Tesla"], "first")[0]) == 1


def test_overlapping_mentions_keep_the_longest():
    spans, _ = align("Bank of America Gains", ["America", "Bank of America"])
    assert texts(spans) == ["Bank of America"]


def test_char_spans_round_trip_through_word_tokens():
    text = "AT&T's Deal With T-Mobile (TMUS)"
    tokens = word_tokens(text)
    spans, _ = align(text, ["AT&T", "T-Mobile", "TMUS"])
    token_spans = char_to_token_spans(tokens, spans)
    assert [token_to_char_span(text, tokens, a, b)["text"] for a, b in token_spans] == ["AT&T", "T-Mobile", "TMUS"]


def test_entity_scores_count_exact_spans_only():
    gold = [[{"start": 0, "end": 5}], [{"start": 0, "end": 4}, {"start": 10, "end": 14}], []]
    pred = [[{"start": 0, "end": 5}], [{"start": 0, "end": 3}], [{"start": 1, "end": 2}]]
    scores = entity_scores(gold, pred)
    assert (scores["tp"], scores["fp"], scores["fn"]) == (1, 2, 2)
    assert scores["precision"] == round(1 / 3, 4) and scores["recall"] == round(1 / 3, 4)
