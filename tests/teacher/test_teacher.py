"""The teacher's request, answer cache and client, against a real local HTTP server that speaks the
chat-completions protocol."""

import asyncio
import json

import pytest

from stages.core.spans import clean_mention, locate
from stages.core.stage_params import ConcurrencyRange
from stages.http import answer_cache
from stages.http.answer_cache import AnswerCache
from stages.http.client import ClientSettings
from stages.teacher.candidates import candidate_mentions
from stages.teacher.endpoint import ask_all
from stages.teacher.labels import label_row
from stages.teacher.replies import ParsedAnswer, parse_answer
from stages.teacher.request import RESPONSE_FORMATS, Extractive, Prompt, RequestSpec
from tests.helpers import EXTRACTIVE, PROMPT, ROOT, run, spec

HEADLINES = [json.loads(line)["text"] for line in (ROOT / "tests/data/headlines.jsonl").read_text().splitlines()]


def answer(*pairs):
    return json.dumps({"companies": [{"mention": m, "name": n} for m, n in pairs]})


def test_answers_are_cached_and_not_asked_twice(fake_teacher, tmp_path):
    headlines = ["Apple Beats Estimates", "Gold Rises", "Tesla Acquires Nokia"]
    stats, failed = run(fake_teacher, headlines, AnswerCache(tmp_path))
    assert failed == {} and stats.calls == 3 and sum(fake_teacher.requests.values()) == 3
    cache = AnswerCache(tmp_path)  # a new process sees every answer on disk
    answer = cache.get(spec().cache_key("Tesla Acquires Nokia"))
    assert json.loads(answer["content"]) == {
        "companies": [{"mention": "Tesla", "name": "Tesla"}, {"mention": "Nokia", "name": "Nokia"}]
    }
    assert answer["concurrency"] == 4  # what this answer's latency is divided by when it is priced
    todo = [h for h in headlines + ["Visa Slips"] if spec().cache_key(h) not in cache]
    run(fake_teacher, todo, cache)
    assert todo == ["Visa Slips"] and fake_teacher.requests["Apple Beats Estimates"] == 1


def test_request_carries_prompt_the_headlines_own_schema_and_a_bounded_length(fake_teacher, tmp_path):
    headline = "Earnings Preview: What To Expect From Bank of America (BAC)"
    run(fake_teacher, [headline], AnswerCache(tmp_path))
    body = fake_teacher.bodies[0]
    assert body["messages"][0] == {"role": "system", "content": PROMPT.system}
    assert body["messages"][-1] == {"role": "user", "content": headline}
    assert len(body["messages"]) == 2 + 2 * len(PROMPT.examples)
    assert body["response_format"]["type"] == "json_object"
    companies = body["response_format"]["schema"]["properties"]["companies"]
    assert companies["maxItems"] == 4
    # a lone "Bank" names no company (candidates.DESIGNATORS): offered only inside "Bank of America"
    assert companies["items"]["properties"]["mention"] == {"enum": ["Bank of America", "BAC"]}
    assert companies["items"]["properties"]["name"] == companies["items"]["properties"]["mention"]
    assert (body["temperature"], body["model"]) == (0.1, "fake")
    longest = '{"companies": [' + ", ".join(['{"mention": "Bank of America", "name": "Bank of America"}'] * 4) + "]}"
    assert len(longest) <= body["max_tokens"] <= 2 * len(longest)  # bounded by what the schema allows


@pytest.mark.parametrize(
    "backend, expected",
    [
        ("llama_cpp", lambda s: {"type": "json_object", "schema": s}),
        ("tgi", lambda s: {"type": "json", "value": s}),
        ("openai", lambda s: {"type": "json_schema", "json_schema": {"name": "companies", "schema": s}}),
    ],
)
def test_each_backend_gets_the_per_headline_schema_its_own_way(backend, expected):
    request = RequestSpec(model="m", prompt=PROMPT, response_format=backend, generation={}, extractive=EXTRACTIVE)
    assert request.body("Apple Up")["response_format"] == expected(EXTRACTIVE.schema("Apple Up"))
    assert set(RESPONSE_FORMATS) == {"llama_cpp", "tgi", "openai", "none"}
    plain = RequestSpec(model="m", prompt=PROMPT, response_format="none", generation={"max_tokens": 512})
    assert "response_format" not in plain.body("Apple Up") and plain.body("Apple Up")["max_tokens"] == 512


def test_free_names_are_bounded_text():
    free = Extractive(max_words=4, max_items=4, free_names=True, max_name_chars=12)
    name = free.schema("Apple Up")["properties"]["companies"]["items"]["properties"]["name"]
    assert name["type"] == "string" and name["pattern"].endswith("{0,12}$")
    assert free.max_tokens("Apple Up") > EXTRACTIVE.max_tokens("Apple Up")


def test_candidates_are_cleaned_word_ngrams_that_cross_no_punctuation_or_function_word():
    assert candidate_mentions("Earnings Preview: What To Expect From Bank of America (BAC)", 4) == [
        "Bank of America",
        "BAC",
    ]  # "America" alone is a place
    assert candidate_mentions("Apple's CEO Sells Shares; AAPL, TSLA And MSFT Slip 5%", 4) == [
        "Apple",
        "Sells",
        "AAPL",
        "TSLA",
        "MSFT",
        "MSFT Slip",
        "Slip",
    ]
    assert candidate_mentions("Johnson & Johnson Beats", 4) == ["Johnson", "Johnson & Johnson"]
    assert candidate_mentions("Gold Up 5% In 2019", 4) == ["Gold"]
    assert candidate_mentions("Up 5% In 2019", 4) == []
    assert candidate_mentions("Advanced Micro Devices Corp Rallies", 2) == [
        "Advanced",
        "Advanced Micro",
        "Micro",
        "Micro Devices",
        "Devices",
        "Devices Corp",
        "Corp Rallies",
        "Rallies",
    ]


def test_candidates_of_real_headlines_leave_out_lone_designators_quoted_people_places_and_lowercase_words():
    # a designator names no company alone, but ends one; before one a generic word is part of the name
    assert candidate_mentions("Kotak Mahindra Bank Shares Up", 4) == [
        "Kotak",
        "Kotak Mahindra",
        "Kotak Mahindra Bank",
        "Mahindra",
        "Mahindra Bank",
    ]
    assert candidate_mentions("News Corp Falls", 4) == ["News Corp"]  # "falls" is a generic word
    # sentence case: a word without a capital is no name, a person quoted at the end is no company ...
    assert candidate_mentions("4200 is key level for Titan: Ashwani Gujral", 4) == ["Titan"]
    assert candidate_mentions("Promoter group sells stake in Infosys", 4) == ["Infosys"]
    assert candidate_mentions("Optimistic on auto, auto ancillaries: Mayuresh Joshi, Angel Broking", 4) == [
        "Optimistic",
        "Angel",
        "Angel Broking",
        "Broking",
    ]  # the person before the comma, not the brokerage
    assert candidate_mentions("Excellent valuations make BEL a buy: P Phani Sekhar", 4) == ["Excellent", "BEL"]
    # places are no companies, but start some
    assert candidate_mentions("Maharashtra set to get new plant", 4) == []
    assert candidate_mentions("Air India sale: Hong Kong shares fall", 4) == ["Air", "Air India"]
    # ... but a brokerage quoted there is one
    assert candidate_mentions("Pharma will continue to perform: IIFL Wealth", 4) == ["IIFL", "IIFL Wealth", "Wealth"]
    # Title Case and all-lowercase headlines say nothing by case
    assert candidate_mentions("Mid-Day Movers: Adobe Leads Gains", 4) == ["Adobe"]
    assert candidate_mentions("nokia falls after weak outlook", 4) == ["nokia", "weak", "weak outlook", "outlook"]


def test_every_candidate_aligns_to_exactly_itself():
    # candidates and alignment trim mentions with one definition (spans.trim): a candidate is already clean
    for text in HEADLINES:
        for candidate in candidate_mentions(text, 4):
            assert clean_mention(candidate) == candidate, text
            assert candidate in {text[s:e] for s, e in locate(text, [candidate])[candidate]}, text


def test_prompt_generation_schema_or_weights_change_misses_the_cache():
    edited = Prompt(system=PROMPT.system + "\nBe brief.", examples=PROMPT.examples)
    keys = {
        spec().cache_key("Apple Up"),
        spec(edited).cache_key("Apple Up"),
        spec(temperature=0.7).cache_key("Apple Up"),
        spec(extractive=None).cache_key("Apple Up"),
        spec(extractive=Extractive(4, 2, False, 40)).cache_key("Apple Up"),
        spec(model_file_sha256="a" * 64).cache_key("Apple Up"),
    }
    assert len(keys) == 6
    assert spec().cache_key("Apple Up") == spec().cache_key("Apple Up")


def test_retry_after_is_respected_and_errors_retried(fake_teacher, tmp_path):
    fake_teacher.script = {"Apple Up": ["429"], "Tesla Down": ["500", "500"]}
    stats, failed = run(fake_teacher, ["Apple Up", "Tesla Down"], AnswerCache(tmp_path))
    assert failed == {} and stats.retries == 3
    first, second = fake_teacher.request_times["Apple Up"]
    assert second - first >= fake_teacher.retry_after_s * 0.95


def test_failures_are_recorded_with_their_kind_not_raised(fake_teacher, tmp_path):
    fake_teacher.script = {"Apple Up": ["500"] * 5, "Tesla Down": ["slow", "slow"]}
    cache = AnswerCache(tmp_path)
    stats, failed = run(fake_teacher, ["Apple Up", "Tesla Down", "Visa Up"], cache, max_attempts=2, timeout_s=1.0)
    assert failed == {"Apple Up": "http_500", "Tesla Down": "timeout"}
    assert stats.failures == {"http_500": 1, "timeout": 1}
    assert spec().cache_key("Visa Up") in cache and spec().cache_key("Apple Up") not in cache
    row = label_row("Apple Up", None, failed["Apple Up"], "all")
    assert row.valid is False and row.error == "request_failed: http_500"


def test_invalid_and_truncated_answers_are_kept_and_flagged(fake_teacher, tmp_path):
    fake_teacher.script = {"Apple Up": ["garbage"], "Tesla Down": ["truncate"]}
    cache = AnswerCache(tmp_path)
    run(fake_teacher, ["Apple Up", "Tesla Down"], cache)
    garbage = cache.get(spec().cache_key("Apple Up"))
    row = label_row("Apple Up", garbage, None, "all")
    assert row.valid is False and row.error.startswith("invalid_json") and row.raw_answer == garbage["content"]
    truncated = cache.get(spec().cache_key("Tesla Down"))
    assert truncated["finish_reason"] == "length"
    assert label_row("Tesla Down", truncated, None, "all").valid is False


def test_pairs_keep_mentions_and_names_aligned_and_flag_hallucinations():
    content = answer(("Apple", "Apple Inc."), ("AAPL", "Apple Inc."), ("Apple", "Apple Computer"), ("Nvidia", "Nvidia"))
    assert parse_answer(content) == ParsedAnswer(
        valid=True, error=None, mentions=["Apple", "AAPL", "Nvidia"], names=["Apple Inc.", "Apple Inc.", "Nvidia"]
    )
    row = label_row("Apple (AAPL) Rallies", {"content": content, "finish_reason": "stop"}, None, "all")
    assert row.valid and (row.mentions, row.names) == (["Apple", "AAPL"], ["Apple Inc.", "Apple Inc."])
    assert [s["text"] for s in row.teacher_spans] == ["Apple", "AAPL"] and row.hallucinated == ["Nvidia"]
    for wrong in (
        '{"mentions": ["Apple"], "names": ["Apple"]}',
        '{"companies": [{"mention": "Apple"}]}',
        '{"companies": "Apple"}',
    ):
        assert parse_answer(wrong).valid is False


def test_a_line_cut_by_a_crash_is_skipped(tmp_path):
    cache = AnswerCache(tmp_path)
    cache.put({"key": "k1", "content": "{}"})
    cache.close()
    with open(next(tmp_path.glob("answers-*.jsonl")), "a") as f:
        f.write('{"key": "k2", "cont')
    reloaded = AnswerCache(tmp_path)
    assert "k1" in reloaded and "k2" not in reloaded and reloaded.skipped == 0
    reloaded.put({"key": "k2", "content": "{}"})
    reloaded.close()
    assert len(list(tmp_path.glob("answers-*.jsonl"))) == 2 and "k2" in AnswerCache(tmp_path)


def test_the_cache_reads_answers_back_from_disk_in_arrival_order(tmp_path):
    with AnswerCache(tmp_path) as cache:
        for i in range(5):
            cache.put({"key": f"k{i}", "content": f"answer {i}"})
        assert cache.get("k3")["content"] == "answer 3" and cache.get("nope") is None  # while still writing
    with AnswerCache(tmp_path) as cache:
        cache.put({"key": "k9", "content": "answer 9"})
        assert [a["key"] for a in cache.answers()] == ["k0", "k1", "k2", "k3", "k4", "k9"]
        assert [a["content"] for a in cache.answers({"k9", "k1"})] == ["answer 1", "answer 9"]
    reloaded = AnswerCache(tmp_path)
    assert len(reloaded) == 6 and reloaded.get("k9")["content"] == "answer 9"


def test_capacity_dropping_mid_run_is_followed_and_nothing_is_lost_or_asked_twice(fake_teacher, tmp_path):
    fake_teacher.delay_s, fake_teacher.retry_after_s = 0.02, 0.1
    fake_teacher.capacity = lambda answered: 8 if answered < 150 else 2  # half the replicas go away
    headlines = [f"Apple Headline Number {i}" for i in range(300)]
    cache = AnswerCache(tmp_path)
    stats, failed = run(
        fake_teacher, headlines, cache, concurrency=ConcurrencyRange(min=1, start=8, max=16), max_attempts=20
    )
    assert failed == {} and all(spec().cache_key(h) in cache for h in headlines)
    assert set(fake_teacher.answered.values()) == {1} and len(fake_teacher.answered) == 300
    assert fake_teacher.rejected > 0 and stats.limit_summary["final"] <= 3, stats.limit_summary
    assert fake_teacher.rejected < 0.2 * 300  # it learnt the new capacity instead of hammering it


def test_a_burst_of_429s_cuts_the_limit_and_every_headline_is_answered_once(fake_teacher, tmp_path):
    fake_teacher.delay_s, fake_teacher.retry_after_s = 0.02, 0.1
    headlines = [f"Tesla Headline Number {i}" for i in range(60)]
    fake_teacher.script = {h: ["429"] for h in headlines[:30]}
    cache = AnswerCache(tmp_path)
    stats, failed = run(fake_teacher, headlines, cache, concurrency=ConcurrencyRange(min=2, start=12, max=12))
    assert failed == {} and set(fake_teacher.answered.values()) == {1} and len(fake_teacher.answered) == 60
    assert stats.limit_summary["min"] < 12 and stats.limit_summary["rejections"] >= 1
    assert {cache.get(spec().cache_key(h))["attempts"] for h in headlines[:30]} == {2}


@pytest.mark.parametrize("suffix", ["", "/", "/v1", "/v1/"])
def test_a_base_url_with_or_without_v1_reaches_the_chat_endpoint(fake_teacher, tmp_path, suffix):
    """vLLM and OpenAI document their base URLs with /v1, TGI and Inference Endpoints without."""
    options = ClientSettings(base_url=fake_teacher.url + suffix, concurrency=1, timeout_s=10.0, max_attempts=1)
    stats, failed = asyncio.run(ask_all([(spec(), "Apple Beats Estimates")], AnswerCache(tmp_path), options))
    assert failed == {} and fake_teacher.requests["Apple Beats Estimates"] == 1


def test_the_key_index_keeps_the_latest_line_across_merges_and_checks_colliding_keys(tmp_path, monkeypatch):
    monkeypatch.setattr(answer_cache.KeyIndex, "MERGE_EVERY", 4)  # merge every few puts
    with AnswerCache(tmp_path) as cache:
        for i in range(10):
            cache.put({"key": f"k{i}", "content": f"answer {i}"})
        cache.put({"key": "k2", "content": "asked again"})  # k2 sits in the merged arrays by now
        assert len(cache) == 10 and cache.get("k2")["content"] == "asked again"
        assert [a["key"] for a in cache.answers()] == [f"k{i}" for i in (0, 1, 3, 4, 5, 6, 7, 8, 9, 2)]
    reloaded = AnswerCache(tmp_path)
    assert len(reloaded) == 10 and reloaded.get("k2")["content"] == "asked again" and "k10" not in reloaded
    monkeypatch.setattr(answer_cache, "key_hash", lambda key: 7)  # every key collides: the line read is checked
    colliding = AnswerCache(tmp_path / "other")
    colliding.put({"key": "a", "content": "answer a"})
    assert colliding.get("a")["content"] == "answer a" and colliding.get("b") is None
