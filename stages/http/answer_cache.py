"""Paid answers on disk: append-only JSONL shards in a store directory (the teacher's data/llm_cache/, tag's
data/tag_cache/), one reader, one writer, one definition of what a cached answer holds (`answer_record`), and the
two moves that share a store across branches and clones: publish (the answers a run used -> its DVC output) and
seed (a pulled output -> the store)."""

from __future__ import annotations

import datetime as dt
import hashlib
import math
import os
import secrets
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np
import orjson

from stages.core.io import replacing_dir

BOM = b"\xef\xbb\xbf"


class CacheWriteError(OSError):
    """An answer could not be written (a full disk): the run stops, every answer written before it is kept."""


class AnswerCache:
    """Every paid answer reaches the OS as soon as it arrives, and memory holds only where each one is.

    Each answer is written to the kernel at once (so killing the process loses nothing) and fsync'd in
    groups (at most `fsync_every_s` of answers at risk if the machine itself goes down). Each run writes a
    shard of its own, named by UTC time and a random part: names never collide across runs or machines
    sharing the cache (so a DVC merge keeps both sides), sorting them keeps arrival order, and no run
    appends to a shard another left, so a crash can at worst cut the last line of its own shard, which the
    reader skips quietly. Every other unreadable line is counted (`skipped`, `first_skipped`).
    The index maps key -> where its line is (KeyIndex: about 20 bytes an answer); answers are read back from
    disk when asked for, so memory stays flat as the cache grows to millions.

    The directory is a store every branch of a checkout reads (git and DVC leave it alone, like DVC's own cache):
    a stage publishes the answers it used as its output (`publish`), which `dvc push/pull` share, and seeds the
    store from what was pulled (`seed`).
    """

    def __init__(self, directory: str | Path, fsync_every_s: float = 1.0):
        self.directory = Path(directory)
        self.fsync_every_s = fsync_every_s
        self.skipped = 0  # unreadable lines (a torn last line is not one)
        self.first_skipped: str | None = None  # the first of them, "file:line"
        self._shards = sorted(self.directory.glob(SHARD_GLOB))  # older runs' numbered names sort first
        self._index = KeyIndex()
        for number, shard in enumerate(self._shards):
            self._scan(number, shard)
        self._readers: dict[int, BinaryIO] = {}
        self._writer: int | None = None  # a file descriptor: os.write hands each line to the kernel whole
        self._size = 0
        self._last_fsync = time.monotonic()

    def __enter__(self) -> AnswerCache:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __len__(self) -> int:
        return len(self._index)

    def __contains__(self, key: str) -> bool:
        return self._index.get(key) is not None

    def get(self, key: str) -> dict | None:
        location = self._index.get(key)
        if location is None:
            return None
        answer = self._read(location)
        return answer if answer["key"] == key else None  # two keys sharing a 64-bit hash: ~1e-8 at 1M answers

    def location(self, key: str) -> int | None:
        """Where the key's answer is; sorting locations sorts answers by arrival."""
        return self._index.get(key)

    def answers(self, keys: Iterable[str] | None = None) -> Iterator[dict]:
        """The answers (of these keys, else all) in the order they arrived."""
        if keys is None:
            yield from self.answers_at(self._index.locations())
            return
        keys = set(keys)
        locations = np.unique(np.fromiter((loc for loc in map(self._index.get, keys) if loc is not None), np.uint64))
        yield from (answer for answer in self.answers_at(locations) if answer["key"] in keys)

    def answers_at(self, locations: np.ndarray) -> Iterator[dict]:
        """The answers at these locations (from `location`), in the order given."""
        for where in locations:
            yield self._read(int(where))

    def refile(self, new_keys: dict[str, str]) -> None:
        """Store the answers of these old keys under their new keys too, in the order they arrived."""

        def arrival(old: str) -> int:
            where = self._index.get(old)
            assert where is not None  # refile is given keys the cache holds
            return where

        for old in sorted(new_keys, key=arrival):
            answer = self.get(old)
            assert answer is not None
            self.put({**answer, "key": new_keys[old]})

    def put(self, entry: dict) -> None:
        """Write one answer; a failed write (a full disk) leaves no partial line and raises CacheWriteError."""
        line = orjson.dumps(answer_record(entry), option=orjson.OPT_SORT_KEYS | orjson.OPT_APPEND_NEWLINE)
        try:
            if self._writer is None:
                self._open_shard()
            assert self._writer is not None  # _open_shard opened one
            offset = self._size
            try:
                view = memoryview(line)
                while view:  # a write near a full disk can be short; the rest goes in the next call or fails
                    view = view[os.write(self._writer, view) :]
            except OSError:
                self._drop_partial_line(offset)
                raise
            self._size += len(line)
            if time.monotonic() - self._last_fsync >= self.fsync_every_s:
                os.fsync(self._writer)
                self._last_fsync = time.monotonic()
        except OSError as error:
            raise CacheWriteError(error.errno, error.strerror, str(self._shards[-1])) from error
        self._index.put(entry["key"], location(len(self._shards) - 1, offset))

    def close(self) -> None:
        for reader in self._readers.values():
            reader.close()
        self._readers.clear()
        if self._writer is not None:
            writer, self._writer = self._writer, None
            try:
                os.fsync(writer)
            except OSError as error:
                raise CacheWriteError(error.errno, error.strerror, str(self._shards[-1])) from error
            finally:
                os.close(writer)

    def _open_shard(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%fZ")
        shard = self.directory / f"answers-{stamp}-{secrets.token_hex(4)}.jsonl"
        self._shards.append(shard)
        # O_EXCL: a name that exists (it cannot, short of a broken clock and a 1 in 2^32 draw) is never appended to
        self._writer = os.open(shard, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o644)
        self._size = 0

    def _drop_partial_line(self, offset: int) -> None:
        """Cut what a failed write left, so the next answer is not glued to a fragment; if even that fails,
        the fragment stays this shard's torn last line and the next answer opens a new shard."""
        assert self._writer is not None  # only put() calls it, with a shard open
        try:
            os.ftruncate(self._writer, offset)
        except OSError:
            os.close(self._writer)
            self._writer = None

    def _scan(self, number: int, shard: Path) -> None:
        with open(shard, "rb") as f:
            offset = 0
            for line_number, line in enumerate(f, 1):
                start = len(BOM) if line_number == 1 and line.startswith(BOM) else 0  # written by an editor
                key = _key(line[start:])
                if key is not None:
                    self._index.put(key, location(number, offset + start))
                elif line.endswith(b"\n") and line.strip():  # not blank, not cut by a crash (no newline)
                    self.skipped += 1
                    self.first_skipped = self.first_skipped or f"{shard}:{line_number}"
                offset += len(line)

    def _read(self, packed: int) -> dict:
        shard, offset = packed >> OFFSET_BITS, packed & OFFSET_MASK
        if shard not in self._readers:
            self._readers[shard] = open(self._shards[shard], "rb")
        reader = self._readers[shard]
        reader.seek(offset)
        return answer_record(orjson.loads(reader.readline()))


SHARD_GLOB = "answers-*.jsonl"


# How a run got an answer (its latency, retries, the requests in flight with it), not the answer: kept in the
# store for speed reports and plans, left out of the published copy, which must be the same on every machine.
RUN_FIELDS = ("latency_s", "attempts", "concurrency")
PUBLISHED_BUCKETS = 16  # files of a published set, by key hash: at a million answers each sorts ~60k in memory


def publish(cache: AnswerCache, locations: Iterable[int], out: Path) -> int:
    """The stage output that records which answers a run used (what `dvc push` shares and `seed` brings back):
    the answers at these locations of the store, without their RUN_FIELDS, one line each, in PUBLISHED_BUCKETS
    files by key hash, each sorted by key, so the same answers give byte-identical files whatever run, machine or
    branch paid for them. Replaces what `out` held; returns how many answers it holds. Memory: one bucket."""
    with replacing_dir(out) as staging:
        staging.mkdir(parents=True)
        buckets = [open(staging / f"unsorted-{n:x}", "wb") for n in range(PUBLISHED_BUCKETS)]
        try:
            for answer in cache.answers_at(np.unique(np.fromiter(locations, np.uint64))):
                line = orjson.dumps(published_record(answer), option=orjson.OPT_SORT_KEYS | orjson.OPT_APPEND_NEWLINE)
                buckets[key_hash(answer["key"]) % PUBLISHED_BUCKETS].write(line)
        finally:
            for bucket in buckets:
                bucket.close()
        total = 0
        for n in range(PUBLISHED_BUCKETS):
            unsorted = staging / f"unsorted-{n:x}"
            by_key = {orjson.loads(line)["key"]: line for line in unsorted.read_bytes().splitlines(keepends=True)}
            unsorted.unlink()
            if by_key:
                (staging / f"answers-{n:x}.jsonl").write_bytes(b"".join(by_key[key] for key in sorted(by_key)))
            total += len(by_key)
    return total


def published_record(answer: dict) -> dict:
    return {name: value for name, value in answer_record(answer).items() if name not in RUN_FIELDS}


def seed(cache: AnswerCache, published: Path) -> int:
    """Put into the store the answers of a published set (a stage's output as `dvc pull` or `dvc checkout` brought
    it) that it lacks; returns how many. Lines that are not answers are skipped here: the set is re-published
    from the store by the run that seeds it."""
    added = 0
    for path in sorted(published.glob(SHARD_GLOB)) if published.is_dir() else []:
        with open(path, "rb") as lines:
            for line in lines:
                key = _key(line)
                if key is not None and key not in cache:
                    cache.put(orjson.loads(line))
                    added += 1
    return added


OFFSET_BITS = 40  # a location is shard << 40 | byte offset: shards up to 1 TB
OFFSET_MASK = (1 << OFFSET_BITS) - 1


def location(shard: int, offset: int) -> int:
    return shard << OFFSET_BITS | offset


def key_hash(key: str) -> int:
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big")


class KeyIndex:
    """key -> location in about 20 bytes an entry (a dict of 64-char keys takes ~250): 64-bit hashes of the keys
    in sorted numpy arrays, plus a small dict of the latest puts merged into them every MERGE_EVERY entries.
    Two keys can share a hash (p ~ 1e-8 at a million answers): the cache checks the key it reads back."""

    MERGE_EVERY = 65536

    def __init__(self) -> None:
        self._hashes = np.empty(0, np.uint64)  # sorted
        self._locations = np.empty(0, np.uint64)  # beside their hashes
        self._recent: dict[int, int] = {}  # hashes not in the arrays

    def __len__(self) -> int:
        return len(self._hashes) + len(self._recent)

    def _position(self, hashed: int) -> int | None:
        position = int(np.searchsorted(self._hashes, np.uint64(hashed)))
        return position if position < len(self._hashes) and int(self._hashes[position]) == hashed else None

    def get(self, key: str) -> int | None:
        hashed = key_hash(key)
        if hashed in self._recent:
            return self._recent[hashed]
        position = self._position(hashed)
        return None if position is None else int(self._locations[position])

    def put(self, key: str, where: int) -> None:
        """The latest line of a key wins (a re-asked or re-filed answer)."""
        hashed = key_hash(key)
        position = None if hashed in self._recent else self._position(hashed)
        if position is not None:
            self._locations[position] = where
            return
        self._recent[hashed] = where
        if len(self._recent) >= self.MERGE_EVERY:
            self._merge()

    def _merge(self) -> None:
        hashes = np.concatenate([self._hashes, np.fromiter(self._recent, np.uint64, len(self._recent))])
        locations = np.concatenate([self._locations, np.fromiter(self._recent.values(), np.uint64, len(self._recent))])
        order = np.argsort(hashes, kind="stable")
        self._hashes, self._locations, self._recent = hashes[order], locations[order], {}

    def locations(self) -> np.ndarray:
        """Every location, sorted: the order the answers arrived in."""
        return np.sort(
            np.concatenate([self._locations, np.fromiter(self._recent.values(), np.uint64, len(self._recent))])
        )


def _key(line: bytes) -> str | None:
    """The key of a shard line; None when it has none."""
    try:
        entry = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    key = entry.get("key") if isinstance(entry, dict) else None
    return key if isinstance(key, str) else None


def answer_record(entry: dict) -> dict:
    """A cached answer as every reader may take it, whatever wrote it (this code, an older one, a hand edit):
    `content` a string, token counts whole numbers, a latency that is a number or none. An answer with no text
    (`content` missing, null, a list, a number) keeps what came, as JSON, in `content` and says why in
    `error`: it is an invalid answer of its headline, flagged, not a crash of every later run."""
    record = dict(entry)
    if not (isinstance(record.get("error"), str) and record["error"]):
        record.pop("error", None)
    content = record.get("content")
    if not isinstance(content, str):
        record["content"] = orjson.dumps(content).decode()
        record.setdefault("error", f"no_content: content is {record['content'][:40]}, not text")
    usage = record.get("usage")
    usage = usage if isinstance(usage, dict) else {}
    record["usage"] = {name: int(value) for name, value in usage.items() if _count(value)}
    if not isinstance(record.get("served_model"), str):
        record.pop("served_model", None)
    if not isinstance(record.get("finish_reason"), str):
        record["finish_reason"] = None
    if not _number(record.get("latency_s")):
        record.pop("latency_s", None)
    for name in ("attempts", "concurrency"):  # both at least 1: concurrency divides the latency
        if name in record:
            record[name] = int(record[name]) if _count(record[name]) and record[name] >= 1 else 1
    return record


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value >= 0


def _count(value) -> bool:
    return _number(value) and value == int(value)
