"""The teacher client against a real local HTTP server that speaks the chat-completions protocol."""
import asyncio
import json

from stages.common.teacher import (AnswerCache, ClientSettings, Prompt, RequestSpec, ask_all, parse_answer)
from stages.llm_label import label_row
from tests.conftest import ROOT

PROMPT = Prompt.load(ROOT / "data/prompts/company_ner.yaml")


def spec(prompt=PROMPT, temperature=0.1):
    return RequestSpec(model="fake", prompt=prompt, response_format="llama_cpp",
                       generation={"temperature": temperature, "max_tokens": 512, "seed": 0})


def run(server, headlines, cache, concurrency=4, request_spec=None, **settings):
    options = ClientSettings(base_url=server.url, concurrency=concurrency, backoff_s=0.05, **settings)
    return asyncio.run(ask_all([(request_spec or spec(), h) for h in headlines], cache, options))


def test_answers_are_cached_and_not_asked_twice(fake_teacher, tmp_path):
    headlines = ["Apple Beats Estimates", "Gold Rises", "Tesla Acquires Nokia"]
    stats, failed = run(fake_teacher, headlines, AnswerCache(tmp_path))
    assert failed == {} and stats.calls == 3 and sum(fake_teacher.requests.values()) == 3
    cache = AnswerCache(tmp_path)  # a new process sees every answer on disk
    answer = cache.get(spec().cache_key("Tesla Acquires Nokia"))
    assert json.loads(answer["content"]) == {"result": ["Tesla", "Nokia"], "normalized_result": ["Tesla", "Nokia"]}
    todo = [h for h in headlines + ["Visa Slips"] if spec().cache_key(h) not in cache]
    run(fake_teacher, todo, cache)
    assert todo == ["Visa Slips"] and fake_teacher.requests["Apple Beats Estimates"] == 1


def test_request_carries_prompt_schema_and_generation_params(fake_teacher, tmp_path):
    run(fake_teacher, ["Apple Up"], AnswerCache(tmp_path))
    body = fake_teacher.bodies[0]
    assert body["messages"][0] == {"role": "system", "content": PROMPT.system}
    assert body["messages"][-1] == {"role": "user", "content": "Apple Up"}
    assert len(body["messages"]) == 2 + 2 * len(PROMPT.examples)
    assert body["response_format"]["type"] == "json_object"
    assert set(body["response_format"]["schema"]["properties"]) == {"result", "normalized_result"}
    assert (body["temperature"], body["max_tokens"], body["model"]) == (0.1, 512, "fake")


def test_prompt_or_generation_change_misses_the_cache():
    edited = Prompt(system=PROMPT.system + "\nBe brief.", examples=PROMPT.examples)
    keys = {spec().cache_key("Apple Up"), spec(edited).cache_key("Apple Up"),
            spec(temperature=0.7).cache_key("Apple Up")}
    assert len(keys) == 3
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
    stats, failed = run(fake_teacher, ["Apple Up", "Tesla Down", "Visa Up"], cache, max_attempts=2,
                        timeout_s=1.0)
    assert failed == {"Apple Up": "http_500", "Tesla Down": "timeout"}
    assert stats.failures == {"http_500": 1, "timeout": 1}
    assert spec().cache_key("Visa Up") in cache and spec().cache_key("Apple Up") not in cache
    row = label_row("Apple Up", None, failed["Apple Up"], "all")
    assert row["valid"] is False and row["error"] == "request_failed: http_500"


def test_invalid_and_truncated_answers_are_kept_and_flagged(fake_teacher, tmp_path):
    fake_teacher.script = {"Apple Up": ["garbage"], "Tesla Down": ["truncate"]}
    cache = AnswerCache(tmp_path)
    run(fake_teacher, ["Apple Up", "Tesla Down"], cache)
    garbage = cache.get(spec().cache_key("Apple Up"))
    row = label_row("Apple Up", garbage, None, "all")
    assert row["valid"] is False and row["error"].startswith("invalid_json") and row["raw_answer"] == garbage["content"]
    truncated = cache.get(spec().cache_key("Tesla Down"))
    assert truncated["finish_reason"] == "length"
    assert label_row("Tesla Down", truncated, None, "all")["valid"] is False


def test_parse_flags_length_mismatch_and_hallucinations():
    content = json.dumps({"result": ["Apple", "AAPL", "Nvidia"], "normalized_result": ["Apple"]})
    row = label_row("Apple (AAPL) Rallies", {"content": content, "finish_reason": "stop"}, None, "all")
    assert row["valid"] and row["length_mismatch"]
    assert [s["text"] for s in row["spans"]] == ["Apple", "AAPL"] and row["hallucinated"] == ["Nvidia"]
    assert parse_answer('{"result": "Apple"}')["valid"] is False


def test_a_line_cut_by_a_crash_is_skipped(tmp_path):
    cache = AnswerCache(tmp_path)
    cache.put({"key": "k1", "content": "{}"})
    cache.close()
    with open(next(tmp_path.glob("answers-*.jsonl")), "a") as f:
        f.write('{"key": "k2", "cont')
    reloaded = AnswerCache(tmp_path)
    assert "k1" in reloaded and "k2" not in reloaded
    reloaded.put({"key": "k2", "content": "{}"})
    reloaded.close()
    assert len(list(tmp_path.glob("answers-*.jsonl"))) == 2 and "k2" in AnswerCache(tmp_path)
