"""The answer store: a run publishes the answers it used as its output (the same bytes wherever they were paid
for), and a store is seeded from what was pulled."""

from __future__ import annotations

from pathlib import Path

import orjson

from stages.http.answer_cache import AnswerCache, publish, seed


def answer(key: str, latency_s: float = 0.5) -> dict:
    return {"key": key, "model": "m", "headline": key, "content": "{}", "latency_s": latency_s, "attempts": 2}


def published(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.iterdir())}


def test_publish_holds_exactly_the_answers_used_without_run_fields(tmp_path):
    with AnswerCache(tmp_path / "store") as cache:
        for key in "abc":
            cache.put(answer(key))
        assert publish(cache, [cache.location("c"), cache.location("a")], tmp_path / "out") == 2
    lines = [orjson.loads(line) for data in published(tmp_path / "out").values() for line in data.splitlines()]
    assert sorted(line["key"] for line in lines) == ["a", "c"]
    assert all("latency_s" not in line and "attempts" not in line for line in lines)


def test_the_same_answers_publish_the_same_bytes_whatever_order_and_timings_they_came_with(tmp_path):
    keys = [f"key-{n}" for n in range(40)]
    with AnswerCache(tmp_path / "one") as one, AnswerCache(tmp_path / "two") as two:
        for n, key in enumerate(keys):
            one.put(answer(key, latency_s=n))
        for key in reversed(keys):
            two.put(answer(key, latency_s=9.0))
        publish(one, [one.location(k) for k in keys], tmp_path / "out-one")
        publish(two, [two.location(k) for k in keys], tmp_path / "out-two")
    assert published(tmp_path / "out-one") == published(tmp_path / "out-two")
    assert len(published(tmp_path / "out-one")) > 1  # spread over buckets, each sorted on its own


def test_seed_adds_only_the_answers_the_store_lacks_and_they_are_found_again(tmp_path):
    with AnswerCache(tmp_path / "paid") as paid:
        for key in "ab":
            paid.put(answer(key))
        publish(paid, [paid.location("a"), paid.location("b")], tmp_path / "pulled")
    with AnswerCache(tmp_path / "store") as store:
        store.put(answer("a"))
        assert seed(store, tmp_path / "nothing") == 0
        assert seed(store, tmp_path / "pulled") == 1 and seed(store, tmp_path / "pulled") == 0
    with AnswerCache(tmp_path / "store") as store:
        assert store.get("a") is not None and store.get("b") is not None and len(store) == 2
