"""The answer store: a run publishes the shards it used as its output, and a store is seeded from what was pulled."""

from __future__ import annotations

from pathlib import Path

from stages.http.answer_cache import AnswerCache, publish, seed


def stored(store: Path, *keys: str) -> list[Path]:
    """One run's answers to these keys, in a shard of its own."""
    with AnswerCache(store) as cache:
        for key in keys:
            cache.put({"key": key, "model": "m", "headline": key, "content": "{}"})
    return sorted(store.glob("answers-*.jsonl"))


def test_publish_holds_exactly_the_shards_of_the_answers_used(tmp_path):
    store = tmp_path / "store"
    first = stored(store, "a", "b")
    second = [s for s in stored(store, "c") if s not in first]
    with AnswerCache(store) as cache:
        publish(cache.shards_at([cache.location("c")]), tmp_path / "out")
    assert [p.name for p in (tmp_path / "out").iterdir()] == [second[0].name]
    assert (tmp_path / "out" / second[0].name).read_bytes() == second[0].read_bytes()


def test_seed_adds_only_the_shards_the_store_lacks_and_answers_are_found_again(tmp_path):
    published, store = tmp_path / "pulled", tmp_path / "store"
    stored(published, "a", "b")
    assert seed(store, tmp_path / "nothing") == 0
    assert seed(store, published) == 1 and seed(store, published) == 0
    with AnswerCache(store) as cache:
        assert cache.get("a") is not None and cache.get("b") is not None
