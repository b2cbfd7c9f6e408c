"""The teacher's answers on disk: append-only JSONL shards in data/llm_cache/, one reader, one writer."""
from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import orjson


class AnswerCache:
    """Every paid answer reaches the OS as soon as it arrives, and memory holds only where each one is.

    Each answer is flushed to the kernel at once (so killing the process loses nothing) and fsync'd in
    groups (at most `fsync_every_s` of answers at risk if the machine itself goes down). A new shard per
    run means a crash can at worst cut the last line of the newest shard, which the reader skips.
    The index maps key -> (shard, offset); answers are read back from disk when asked for, so a cache of
    millions of answers costs a few hundred bytes each in memory. DVC tracks the directory as a
    persistent output, so `dvc push/pull` shares it.
    """

    def __init__(self, directory: str | Path, fsync_every_s: float = 1.0):
        self.directory = Path(directory)
        self.fsync_every_s = fsync_every_s
        self.hits = self.misses = 0  # `key in cache` questions answered yes / no
        self._shards = sorted(self.directory.glob("answers-*.jsonl"))
        self._index: dict[str, tuple[int, int]] = {}  # in arrival order: first arrival of each key
        for number, shard in enumerate(self._shards):
            with open(shard, "rb") as f:
                offset = 0
                for line in f:
                    key = _key(line)
                    if key is not None:
                        self._index[key] = (number, offset)
                    offset += len(line)
        self._readers: dict[int, BinaryIO] = {}
        self._writer: BinaryIO | None = None
        self._last_fsync = time.monotonic()

    def __enter__(self) -> AnswerCache:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __len__(self) -> int:
        return len(self._index)

    def __contains__(self, key: str) -> bool:
        found = key in self._index
        self.hits, self.misses = self.hits + found, self.misses + (not found)
        return found

    def get(self, key: str) -> dict | None:
        location = self._index.get(key)
        return None if location is None else self._read(*location)

    def answers(self, keys: set[str] | None = None) -> Iterator[dict]:
        """The answers (of these keys, else all) in the order they arrived."""
        for key, location in self._index.items():
            if keys is None or key in keys:
                yield self._read(*location)

    def put(self, entry: dict) -> None:
        if self._writer is None:
            self.directory.mkdir(parents=True, exist_ok=True)
            number = len(list(self.directory.glob("answers-*.jsonl")))
            self._shards.append(self.directory / f"answers-{number:05d}.jsonl")
            self._writer = open(self._shards[-1], "ab")
        offset = self._writer.tell()
        self._writer.write(orjson.dumps(entry, option=orjson.OPT_SORT_KEYS | orjson.OPT_APPEND_NEWLINE))
        self._writer.flush()
        if time.monotonic() - self._last_fsync >= self.fsync_every_s:
            os.fsync(self._writer.fileno())
            self._last_fsync = time.monotonic()
        self._index[entry["key"]] = (len(self._shards) - 1, offset)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.flush()
            os.fsync(self._writer.fileno())
            self._writer.close()
            self._writer = None
        for reader in self._readers.values():
            reader.close()
        self._readers.clear()

    def _read(self, shard: int, offset: int) -> dict:
        if shard not in self._readers:
            self._readers[shard] = open(self._shards[shard], "rb")
        reader = self._readers[shard]
        reader.seek(offset)
        return orjson.loads(reader.readline())


def _key(line: bytes) -> str | None:
    """The key of a shard line; None for a line cut by a crash (that call is simply asked again)."""
    try:
        return orjson.loads(line)["key"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return None
