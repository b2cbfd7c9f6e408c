"""The teacher's failure paths (issue 19): malformed replies, odd answers and old caches, a full disk, shard
names, unreadable cache lines, the token. Nothing paid for is lost and nothing ends a run but a full disk."""

import asyncio
import errno
import json
import os
import re
import subprocess
import sys
import zlib
from pathlib import Path

import polars as pl
import pytest

from stages.http import answer_cache
from stages.http.answer_cache import AnswerCache, CacheWriteError
from stages.http.client import ClientSettings
from stages.llm_label import missing_answers
from stages.teacher.endpoint import ask_all, describe_failures
from stages.teacher.labels import label_row, label_table
from stages.teacher.request import Extractive, Prompt, RequestSpec
from stages.teacher.usage import usage_totals
from tests.helpers import EXTRACTIVE, edit_params, run, sh, spec, stages_run

# behaviour -> how its headline ends: an invalid answer cached with this error, or a failure of this kind
INVALID = {
    "message_null": "no_content: message is null, not an object",
    "content_list": 'no_content: content is [{"type":"text","text":"Apple"}], not text',
    "content_number": "no_content: content is 42, not text",
}
FAILED = {
    "not_utf8": "bad_response",
    "no_choices": "bad_response",
    "empty_choices": "bad_response",
    "choices_not_list": "bad_response",
    "bad_body": "bad_response",
    "not_utf8_500": "http_500",
}


def test_a_malformed_reply_is_an_invalid_answer_or_a_retried_failure_and_ends_nothing(fake_teacher, tmp_path):
    kinds = {**INVALID, **FAILED, "usage_null": None}
    headlines = {kind: f"Apple Headline {kind}" for kind in kinds}
    good = [f"Tesla Headline {i}" for i in range(10)]
    fake_teacher.script = {headlines[kind]: [kind] * 3 for kind in kinds}
    fake_teacher.script["Visa Once"] = ["not_utf8"]  # once: the retry gets the answer
    cache = AnswerCache(tmp_path)
    stats, failed = run(fake_teacher, [*headlines.values(), *good, "Visa Once"], cache, max_attempts=3)
    cache.close()

    assert failed == {headlines[kind]: failure for kind, failure in FAILED.items()}
    assert all(fake_teacher.requests[headlines[kind]] == 3 for kind in FAILED)  # retried like a 500
    assert "bad_response x5 after 3 attempts each" in describe_failures(failed, 3)
    assert describe_failures({"Apple Up": "http_400"}, 3) == "1 headline(s) failed: http_400 x1 (not retryable)"
    reloaded = AnswerCache(tmp_path)
    assert len(reloaded) == len(good) + len(INVALID) + 2 and reloaded.skipped == 0
    for kind, error in INVALID.items():  # the endpoint answered (and was paid): kept, flagged, not asked again
        answer = reloaded.get(spec().cache_key(headlines[kind]))
        row = label_row(headlines[kind], answer, None, "all")
        assert (row.valid, row.error, fake_teacher.requests[headlines[kind]]) == (False, error, 1)
        assert isinstance(row.raw_answer, str)
    usage_null = reloaded.get(spec().cache_key(headlines["usage_null"]))
    assert usage_null["usage"] == {} and label_row(headlines["usage_null"], usage_null, None, "all").valid
    assert reloaded.get(spec().cache_key("Visa Once"))["attempts"] == 2
    assert usage_totals(reloaded.answers())["prompt_tokens"] == 100 * (len(good) + len(INVALID) + 1)


def test_odd_answers_in_an_old_cache_are_read_not_crashed_on(tmp_path):
    """Lines today's code would never write, but older code or a hand edit did: each reads as an answer."""
    key = spec().cache_key
    lines = [
        {"key": key("Apple Up"), "content": ["Apple"], "usage": {"prompt_tokens": None}},
        {"key": key("Tesla Up"), "content": 7, "usage": None, "latency_s": None, "concurrency": 0},
        {"key": key("Visa Up"), "finish_reason": 3, "usage": {"prompt_tokens": "many", "completion_tokens": 2}},
        {"key": key("Nokia Up"), "content": '{"companies": []}', "error": None, "attempts": None},
    ]
    (tmp_path / "answers-00000.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    headlines = pl.DataFrame({"id": ["a", "t", "v", "n"], "text": ["Apple Up", "Tesla Up", "Visa Up", "Nokia Up"]})
    with AnswerCache(tmp_path) as cache:
        table = label_table(headlines, [spec()], cache, {}, "all")
        totals = usage_totals(cache.answers())
    assert table["valid"].to_list() == [False, False, False, True]
    assert table["error"].to_list()[:3] == [
        'no_content: content is ["Apple"], not text',
        "no_content: content is 7, not text",
        "no_content: content is null, not text",
    ]
    assert table["raw_answer"].to_list() == ['["Apple"]', "7", "null", '{"companies": []}']
    assert table["finish_reason"].to_list() == [None] * 4
    assert (totals["prompt_tokens"], totals["completion_tokens"], totals["retries"]) == (0, 2, 0)


def test_a_cache_written_before_the_key_change_is_found_and_refiled(tmp_path):
    # Keys computed by the code before issue 19 (commit e2f6d38) for this spec and headline: answers cached
    # under them are paid for, so they must be found without asking.
    prompt = Prompt(
        system="Name the companies.", examples=(("Apple Up", '{"companies": [{"mention": "Apple", "name": "Apple"}]}'),)
    )
    old_keys = {
        Extractive(4, 4, False, 40): "4389d07bed1a71f9759ff49e1919c12a2f8b4ec16b228b186faaba1fbbabf787",
        None: "a083621fde185aa79800318fe905ef3fa30859b9bd5dc962f285164fb12d5917",
    }
    headline = "Tesla (TSLA) Beats Estimates"
    for extractive, old_key in old_keys.items():
        request = RequestSpec(
            model="m",
            prompt=prompt,
            response_format="llama_cpp",
            generation={"temperature": 0.1, "max_tokens": 512, "seed": 0},
            extractive=extractive,
            model_file_sha256="ab" * 32,
        )
        assert request.legacy_cache_key(headline) == old_key and request.cache_key(headline) != old_key
        directory = tmp_path / str(extractive is None)
        with AnswerCache(directory) as cache:
            cache.put({"key": old_key, "content": "{}", "latency_s": 0.5})
        with AnswerCache(directory) as cache:
            _, todo, legacy = missing_answers([request], [headline], cache)
            assert (todo, legacy) == ([], {old_key: request.cache_key(headline)})
            cache.refile(legacy)
        with AnswerCache(directory) as cache:
            assert missing_answers([request], [headline], cache)[1:] == ([], {})
            assert cache.get(request.cache_key(headline))["latency_s"] == 0.5


def test_the_key_covers_what_reaches_the_endpoint_only():
    def keyed(max_tokens, extractive=EXTRACTIVE):
        request = RequestSpec(
            model="m",
            prompt=Prompt(system="s", examples=()),
            response_format="llama_cpp",
            generation={"temperature": 0.1, "max_tokens": max_tokens, "seed": 0},
            extractive=extractive,
        )
        return request.body("Apple Up"), request.cache_key("Apple Up")

    assert keyed(512)[0] == keyed(256)[0] and keyed(512)[1] == keyed(256)[1]  # the schema sets max_tokens
    assert keyed(512, None)[1] != keyed(256, None)[1]  # here max_tokens is sent


def test_a_failed_write_stops_the_run_after_the_answers_in_flight_are_cached(fake_teacher, tmp_path, monkeypatch):
    fake_teacher.slow_s = 0.5
    slow, fast = [f"Apple Slow {i}" for i in range(3)], [f"Tesla Fast {i}" for i in range(10)]
    fake_teacher.script = {h: ["slow"] for h in slow}  # in flight when the third answer cannot be written
    cache = AnswerCache(tmp_path)
    put, writes = cache.put, []

    def put_failing_once(entry):
        writes.append(entry["headline"])
        if len(writes) == 3:
            raise CacheWriteError(errno.ENOSPC, "No space left on device", "shard")
        put(entry)

    monkeypatch.setattr(cache, "put", put_failing_once)
    with pytest.raises(CacheWriteError, match="No space left"):
        run(fake_teacher, [*slow, *fast], cache)
    cache.close()
    assert sum(fake_teacher.requests.values()) == 6  # it stopped asking
    reloaded = AnswerCache(tmp_path)
    assert len(reloaded) == 5 and all(spec().cache_key(h) in reloaded for h in slow)  # all but the one that failed


def test_a_full_disk_leaves_whole_lines_and_names_the_shard(tmp_path, monkeypatch):
    real_write, room = answer_cache.os.write, [300]

    def write(fd, data):  # a disk with 300 bytes free: a short write, then ENOSPC
        if room[0] <= 0:
            raise OSError(errno.ENOSPC, "No space left on device")
        written = real_write(fd, bytes(data[: room[0]]))
        room[0] -= written
        return written

    monkeypatch.setattr(answer_cache.os, "write", write)
    cache = AnswerCache(tmp_path)
    with pytest.raises(CacheWriteError) as raised:
        for i in range(10):
            cache.put({"key": f"k{i}", "content": "x" * 50})
    assert raised.value.errno == errno.ENOSPC and raised.value.filename.startswith(str(tmp_path / "answers-"))
    room[0] = 10_000  # space freed: the same run writes on, after whole lines only
    cache.put({"key": "later", "content": "x"})
    cache.close()
    reloaded = AnswerCache(tmp_path)
    assert reloaded.skipped == 0 and len(reloaded) == i + 1 and "later" in reloaded


def test_shard_names_are_unique_sorted_by_arrival_and_never_appended_to(tmp_path):
    (tmp_path / "answers-00000.jsonl").write_text('{"key": "a", "content": "{}"}\n')
    torn = '{"key": "b", "content": "{}"}\n{"key": "c", "cont'
    (tmp_path / "answers-00002.jsonl").write_text(torn)
    first, second = AnswerCache(tmp_path), AnswerCache(tmp_path)  # two machines extending one shared cache
    first.put({"key": "c", "content": "{}"})
    second.put({"key": "d", "content": "{}"})
    first.close()
    second.close()
    with AnswerCache(tmp_path) as third:
        third.put({"key": "e", "content": "{}"})
    names = sorted(p.name for p in tmp_path.glob("answers-*.jsonl"))
    assert len(names) == 5 and names[:2] == ["answers-00000.jsonl", "answers-00002.jsonl"]
    assert all(re.fullmatch(r"answers-\d{8}T\d{12}Z-[0-9a-f]{8}\.jsonl", n) for n in names[2:])
    assert (tmp_path / "answers-00002.jsonl").read_text() == torn
    reloaded = AnswerCache(tmp_path)
    assert [a["key"] for a in reloaded.answers()] == ["a", "b", "c", "d", "e"] and reloaded.skipped == 0


def test_unreadable_lines_are_counted_with_the_first_one_named_and_a_bom_is_read(tmp_path):
    (tmp_path / "answers-00000.jsonl").write_bytes(
        b"\xef\xbb\xbf" + b'{"key": "a", "content": "{}"}\n{"key": "b", "con\n\n["not", "an", "answer"]\n'
        b'{"key": "c", "content": "{}"}\n{"key": 5}\n'
    )
    (tmp_path / "answers-00001.jsonl").write_bytes(b'{"key": "d", "content": "{}"}\n{"key": "e", "cont')
    cache = AnswerCache(tmp_path)
    assert [a["key"] for a in cache.answers()] == ["a", "c", "d"]
    assert cache.get("a")["content"] == "{}"
    assert (cache.skipped, cache.first_skipped) == (3, f"{tmp_path / 'answers-00000.jsonl'}:2")


def test_the_token_is_in_the_authorization_header_only(fake_teacher, tmp_path):
    settings = ClientSettings(
        base_url=fake_teacher.url, concurrency=1, timeout_s=5, max_attempts=1, token="sk-secret-123"
    )
    assert "sk-secret-123" not in repr(settings) and "sk-secret-123" not in str(settings)
    asyncio.run(ask_all([(spec(), "Apple Up")], AnswerCache(tmp_path), settings))
    assert fake_teacher.headers[0]["Authorization"] == "Bearer sk-secret-123"
    assert "sk-secret-123" not in "".join(p.read_text() for p in tmp_path.glob("*"))


@pytest.mark.slow
def test_dvc_repro_against_an_endpoint_sending_every_malformed_reply(repo, fake_teacher):
    """Each malformed reply on about one headline in 15, the rest answered correctly: one `dvc repro` caches
    every answer, flags the invalid ones and fails only for the headlines that got no answer; the next
    asks only for those."""
    kinds = [*INVALID, *FAILED, "usage_null"]

    def kind(headline):
        slot = zlib.crc32(headline.encode()) % 15
        return kinds[slot] if slot < len(kinds) else "ok"

    edit_params(repo, lambda params: params["llm_label"].update(max_attempts=2))
    fake_teacher.plan = lambda headline: [kind(headline)] * (2 if kind(headline) in FAILED else 1)
    first = subprocess.run(
        ["dvc", "repro", "llm_label"],
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=600,
        env=dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"),
    )
    table = pl.read_parquet(repo / "data/labels/llm_labels.parquet")
    by_kind = {text: kind(text) for text in table["text"]}
    failing = sorted(text for text, k in by_kind.items() if k in FAILED)
    assert set(by_kind.values()) == {*kinds, "ok"} and len(failing) < 60  # every kind, and mostly good answers
    assert first.returncode != 0 and f"{len(failing)} headline(s) failed: " in first.stderr, first.stderr[-3000:]
    assert "Traceback" not in first.stderr
    for row in table.iter_rows(named=True):
        expected = {"ok": None, "usage_null": None, **INVALID}.get(by_kind[row["text"]])
        expected = f"request_failed: {FAILED[by_kind[row['text']]]}" if row["text"] in failing else expected
        assert row["error"] == expected, (by_kind[row["text"]], row)
    with AnswerCache(repo / "data/llm_cache") as cache:
        assert len(cache) == len(table) - len(failing) and cache.skipped == 0

    asked = fake_teacher.requests.copy()
    second = sh(repo, "dvc", "repro", "llm_label")
    assert stages_run(second) == {"llm_label"}
    assert sorted((fake_teacher.requests - asked).elements()) == failing  # each once, and nothing else
    table = pl.read_parquet(repo / "data/labels/llm_labels.parquet")
    assert sorted(table.filter(~pl.col("valid"))["text"]) == sorted(t for t, k in by_kind.items() if k in INVALID)
