"""The LLM teacher: prompt, answer cache, async client for any OpenAI-compatible chat endpoint, parsing.

Works with HF Inference Endpoints / TGI, vLLM and llama.cpp server: they all speak
POST {base_url}/v1/chat/completions. Only the structured-output field differs; `response_format`
in params picks it.
"""
from __future__ import annotations

import asyncio
import hashlib
import json
import os
import random
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, replace
from functools import cached_property
from pathlib import Path

import aiohttp
import orjson
import yaml
from pydantic import BaseModel, ValidationError

from stages.common.concurrency import AdaptiveLimit, Gate


class Company(BaseModel):
    mention: str  # as written in the headline
    name: str     # its normalised (official) name


class Companies(BaseModel):
    """What the teacher must answer: one {mention, name} pair per company, so the two cannot differ in number."""
    companies: list[Company]


ANSWER_SCHEMA = Companies.model_json_schema()

RESPONSE_FORMATS: dict[str, Callable[[dict], dict | None]] = {
    "llama_cpp": lambda schema: {"type": "json_object", "schema": schema},
    "tgi": lambda schema: {"type": "json", "value": schema},
    "openai": lambda schema: {"type": "json_schema", "json_schema": {"name": "companies", "schema": schema}},
    "none": lambda schema: None,
}

# Words that are never part of a company mention, except JOINERS inside one ("Bank of America"): the
# others end a phrase ("Apple And Tesla", "Rises As Oil Slides").
FUNCTION_WORDS = frozenset("""a about above after against ahead all amid an and are as at be before behind below
    but by can could de did do does down during for from has have how if in into is it its la may might more most
    new no not of off on onto or out over per says should so than that the their this to under up via vs versus
    was what when where which while who why will with without would &""".split())
JOINERS = frozenset(["of", "the", "de", "la", "&"])
# Words of financial headlines that are no part of a company name ("Adobe Acquires Nokia" offers "Adobe" and
# "Nokia"): offered as mentions, a small model picks them. Index names are here too: in a headline "Dow" or "Nasdaq" is the index, which is not a company.
GENERIC_WORDS = frozenset("""acquires after-hours analyst analysts announces beat beats bet better buy buyback buys
    ceo cfo claims climbs cuts deal deals declares dividend downgrades drags drops earnings eps estimates expect
    falls futures gains guidance healthcare higher hits housing interest ipo jobless jumps launches leads lower
    market markets mid-day misses mixed movers moving news option options partnership plunges points pre-market
    premarket preview price prices profit quarter quarterly raises rally report reports revenue rises sales
    scheduled sees sell session share shares short sinks slides slips soars starts stock stocks strong sues
    supply surges targets today top traders trading tweet upgrades update week year
    dow nasdaq ftse dax nikkei cac s&p russell
    monday tuesday wednesday thursday friday saturday sunday january february march april june july august
    september october november december q1 q2 q3 q4""".split())
_OPENERS = "([{\"'“‘"
_CLOSERS = ")]}\"'”’,;:?!."
_POSSESSIVES = ("'s", "’s", "'S", "’S")


def _words(text: str) -> list[tuple[int, int, bool]]:
    """(start, end, phrase_ends_here) of each word, without wrappers, trailing punctuation or possessive.

    A phrase ends at punctuation (',', ':', ')', ...), a possessive, a function or generic word other than a
    joiner, or a word with no letter (a number, a dash, a price): no mention runs across one.
    """
    words: list[tuple[int, int, bool]] = []

    def end_phrase() -> None:
        if words:
            words[-1] = (*words[-1][:2], True)

    for match in re.finditer(r"\S+", text):
        start, end = match.span()
        while start < end and text[start] in _OPENERS:
            start += 1
        if start > match.start():
            end_phrase()
        while end > start and text[end - 1] in _CLOSERS:
            end -= 1
        if text[start:end].endswith(_POSSESSIVES):
            end -= 2
        word = text[start:end].lower()
        if word not in JOINERS and (word in FUNCTION_WORDS or word in GENERIC_WORDS or word.startswith("$")
                                    or word.endswith("%") or not any(c.isalpha() for c in word)):
            end_phrase()
            continue
        words.append((start, end, end < match.end()))
    return words


def candidate_mentions(text: str, max_words: int) -> list[str]:
    """What the teacher may name in this headline: its word n-grams up to max_words, cleaned of wrappers
    ('(AAPL)' -> 'AAPL') and possessives, not crossing punctuation, function or generic words, not starting or
    ending with a joiner. Each is a slice of the headline, so it always aligns to a span."""
    words = _words(text)
    skip = [text[s:e].lower() in JOINERS for s, e, _ in words]
    found: dict[str, None] = {}
    for i, (start, _, _) in enumerate(words):
        for j in range(i, min(i + max_words, len(words))):
            if not skip[i] and not skip[j]:
                found[text[start:words[j][1]]] = None
            if words[j][2]:
                break
    return list(found)


@dataclass(frozen=True)
class Extractive:
    """The per-headline answer schema: every mention one of the headline's candidates, at most max_items of
    them. Names are candidates too unless free_names (then free text of at most max_name_chars): llama.cpp
    checks a free string against the whole vocabulary at every token, ~20x slower than a choice between a few
    strings. The answer is bounded either way, so max_tokens follows from it."""
    max_words: int = 4
    max_items: int = 4
    free_names: bool = False
    max_name_chars: int = 40

    def schema(self, headline: str) -> dict:
        candidates = candidate_mentions(headline, self.max_words)
        mention = {"enum": candidates} if candidates else {"type": "string", "maxLength": 0}
        # a character class, not maxLength: llama.cpp matches it faster
        name = {"type": "string", "pattern": f"^[^\"\\\\\\x00-\\x1f]{{0,{self.max_name_chars}}}$"} \
            if self.free_names else mention
        item = {"type": "object", "required": ["mention", "name"], "additionalProperties": False,
                "properties": {"mention": mention, "name": name}}
        return {"type": "object", "required": ["companies"], "additionalProperties": False,
                "properties": {"companies": {"type": "array", "items": item,
                                             "maxItems": self.max_items if candidates else 0}}}

    def max_tokens(self, headline: str) -> int:
        """Characters of the longest answer the schema allows, with the optional space the grammar permits
        after each JSON token: no token is shorter than a character, so no answer can be cut."""
        longest = max((len(json.dumps(c)) for c in candidate_mentions(headline, self.max_words)), default=2)
        name = self.max_name_chars + 2 if self.free_names else longest
        item = len('{"mention": , "name": }, ') + 4 + longest + name
        return len('{"companies": []} ') + 4 + self.max_items * item


@dataclass(frozen=True)
class Prompt:
    system: str
    examples: tuple[tuple[str, str], ...]  # (headline, answer JSON)

    @classmethod
    def load(cls, path: str | Path) -> Prompt:
        with open(path, encoding="utf-8") as f:
            raw = yaml.safe_load(f)
        try:
            examples = tuple((e["headline"], json.dumps(Companies(**e["answer"]).model_dump(), ensure_ascii=False))
                             for e in raw.get("examples", []))
            return cls(system=raw["system"].strip(), examples=examples)
        except (KeyError, TypeError, ValidationError) as error:
            raise SystemExit(f"{path}: bad prompt file: {error}") from error

    @cached_property
    def _prefix(self) -> list[dict]:
        turns = [{"role": "system", "content": self.system}]
        for example, answer in self.examples:
            turns += [{"role": "user", "content": example}, {"role": "assistant", "content": answer}]
        return turns

    def messages(self, headline: str) -> list[dict]:
        return [*self._prefix, {"role": "user", "content": headline}]


@dataclass(frozen=True)
class RequestSpec:
    """Everything that changes the teacher's answer: a different spec is a cache miss."""
    model: str
    prompt: Prompt
    response_format: str
    generation: dict
    extractive: Extractive | None = None  # None: any JSON answer (endpoints that take no schema)
    model_file_sha256: str | None = None  # the weights behind `model` when we serve them ourselves

    def for_sample(self, index: int) -> RequestSpec:
        """The spec of the index-th self-consistency sample: same request, its own seed (and cache key)."""
        if index == 0:
            return self
        return replace(self, generation={**self.generation, "seed": self.generation.get("seed", 0) + index})

    @cached_property
    def fingerprint(self) -> str:
        blob = json.dumps({"model": self.model, "model_file_sha256": self.model_file_sha256,
                           "system": self.prompt.system, "examples": self.prompt.examples, "schema": ANSWER_SCHEMA,
                           "extractive": asdict(self.extractive) if self.extractive else None,
                           "response_format": self.response_format, "generation": self.generation}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()

    def schema(self, headline: str) -> dict:
        return self.extractive.schema(headline) if self.extractive else ANSWER_SCHEMA

    def cache_key(self, headline: str) -> str:
        # The headline's own schema, not just the settings: a change in how candidates are chosen is a miss.
        schema = json.dumps(self.extractive.schema(headline)) if self.extractive else ""
        return hashlib.sha256(f"{self.fingerprint}\n{headline}\n{schema}".encode()).hexdigest()

    def body(self, headline: str) -> dict:
        body = {"model": self.model, "messages": self.prompt.messages(headline), **self.generation}
        if self.extractive:
            body["max_tokens"] = self.extractive.max_tokens(headline)
        response_format = RESPONSE_FORMATS[self.response_format](self.schema(headline))
        if response_format:
            body["response_format"] = response_format
        return body


class AnswerCache:
    """Append-only JSONL shards: every paid answer reaches the OS as soon as it arrives.

    Each answer is flushed to the kernel at once (so killing the process loses nothing) and fsync'd in
    groups (at most `fsync_every_s` of answers at risk if the machine itself goes down). A new shard per
    run means a crash can at worst cut the last line of the newest shard, which the reader skips.
    DVC tracks the directory as a persistent output, so `dvc push/pull` shares it.
    """

    def __init__(self, directory: str | Path, fsync_every_s: float = 1.0):
        self.directory = Path(directory)
        self.fsync_every_s = fsync_every_s
        self._last_fsync = time.monotonic()
        self.answers: dict[str, dict] = {}
        for shard in sorted(self.directory.glob("answers-*.jsonl")):
            with open(shard, "rb") as f:
                for line in f:
                    try:
                        entry = orjson.loads(line)
                        self.answers[entry["key"]] = entry
                    except (orjson.JSONDecodeError, KeyError, TypeError):
                        continue  # a line cut by a crash: that call is simply asked again
        self._shard = None

    def __contains__(self, key: str) -> bool:
        return key in self.answers

    def get(self, key: str) -> dict | None:
        return self.answers.get(key)

    def put(self, entry: dict) -> None:
        if self._shard is None:
            self.directory.mkdir(parents=True, exist_ok=True)
            number = len(list(self.directory.glob("answers-*.jsonl")))
            self._shard = open(self.directory / f"answers-{number:05d}.jsonl", "ab")
        self._shard.write(orjson.dumps(entry, option=orjson.OPT_SORT_KEYS | orjson.OPT_APPEND_NEWLINE))
        self._shard.flush()
        if time.monotonic() - self._last_fsync >= self.fsync_every_s:
            os.fsync(self._shard.fileno())
            self._last_fsync = time.monotonic()
        self.answers[entry["key"]] = entry

    def close(self) -> None:
        if self._shard is not None:
            self._shard.flush()
            os.fsync(self._shard.fileno())
            self._shard.close()
            self._shard = None


class TeacherError(Exception):
    def __init__(self, kind: str, detail: str = ""):
        super().__init__(f"{kind}: {detail}" if detail else kind)
        self.kind = kind


RETRYABLE_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}
OVERLOAD_STATUS = {429, 503}  # the endpoint is full: fewer requests in flight
RETRYABLE_KINDS = frozenset({"timeout", "connection", *(f"http_{status}" for status in RETRYABLE_STATUS)})


@dataclass
class ClientSettings:
    base_url: str
    token: str | None = None
    # requests in flight: {min, start, max} adapts to the endpoint's capacity (see concurrency.py); min = max
    # fixes it; a plain number is a fixed limit
    concurrency: int | dict = 8
    timeout_s: float = 120.0
    max_attempts: int = 5
    backoff_s: float = 1.0
    max_backoff_s: float = 60.0

    def limit(self) -> AdaptiveLimit:
        c = self.concurrency
        bounds = (c, c, c) if isinstance(c, int) else (c["min"], c["start"], c["max"])
        return AdaptiveLimit(minimum=bounds[0], start=bounds[1], maximum=bounds[2])


@dataclass
class RunStats:
    calls: int = 0
    retries: int = 0
    failures: dict[str, int] = field(default_factory=dict)
    latencies_s: list[float] = field(default_factory=list)
    limit_summary: dict = field(default_factory=dict)         # how the concurrency limit moved
    limit_history: list[tuple[float, int]] = field(default_factory=list)


def retry_delay(attempt: int, settings: ClientSettings, retry_after: str | None) -> float:
    """Server's Retry-After when given, else exponential backoff with full jitter."""
    if retry_after:
        try:
            return min(float(retry_after), settings.max_backoff_s)
        except ValueError:
            pass
    return random.uniform(0, min(settings.max_backoff_s, settings.backoff_s * 2 ** attempt))


async def ask(session: aiohttp.ClientSession, url: str, body: dict, settings: ClientSettings,
              stats: RunStats, gate: Gate) -> dict:
    """One chat completion with retries, each attempt holding a permit of the gate (a retry waits without
    one). Returns content, finish_reason, usage and the limit it ran under; raises TeacherError."""
    last = TeacherError("unknown")
    for attempt in range(settings.max_attempts):
        if attempt:
            stats.retries += 1
        retry_after = None
        try:
            async with gate:
                started = time.perf_counter()
                stats.calls += 1
                async with session.post(url, json=body) as response:
                    if response.status == 200:
                        payload = await response.json(content_type=None)
                        choice = payload["choices"][0]
                        latency = time.perf_counter() - started
                        stats.latencies_s.append(latency)
                        concurrency = int(gate.limit.limit)
                        gate.limit.on_success(latency, gate.in_flight)
                        return {"content": choice["message"].get("content") or "",
                                "finish_reason": choice.get("finish_reason"), "usage": payload.get("usage") or {},
                                "latency_s": round(latency, 3), "attempts": attempt + 1, "concurrency": concurrency}
                    text = (await response.text())[:200]
                    last = TeacherError(f"http_{response.status}", text)
                    if response.status not in RETRYABLE_STATUS:
                        raise last
                    if response.status in OVERLOAD_STATUS:
                        gate.limit.on_rejection()
                    retry_after = response.headers.get("Retry-After")
        except asyncio.TimeoutError:
            gate.limit.on_rejection()
            last = TeacherError("timeout", f"no answer in {settings.timeout_s}s")
        except aiohttp.ClientError as error:
            last = TeacherError("connection", str(error)[:200])
        except (KeyError, IndexError, TypeError, json.JSONDecodeError) as error:
            raise TeacherError("bad_response", repr(error)[:200]) from error
        if attempt + 1 < settings.max_attempts:
            await asyncio.sleep(retry_delay(attempt, settings, retry_after))
    raise last


async def ask_all(jobs: Iterable[tuple[RequestSpec, str]], cache: AnswerCache, settings: ClientSettings,
                  on_done: Callable[[], None] = lambda: None) -> tuple[RunStats, dict[str, str]]:
    """Ask every (spec, headline) job with at most the adaptive limit of requests in flight; callers pass cache
    misses.

    Jobs are pulled lazily, so memory does not grow with the input, and a slow answer holds up only its
    own worker. Answers go to the cache as they arrive; returns run stats (with how the limit moved) and
    the error kind per failed headline.
    """
    pending = iter(jobs)
    stats, failed = RunStats(), {}
    limit = settings.limit()
    gate = Gate(limit)
    url = settings.base_url.rstrip("/") + "/v1/chat/completions"
    headers = {"Authorization": f"Bearer {settings.token}"} if settings.token else {}
    timeout = aiohttp.ClientTimeout(total=settings.timeout_s)

    async with aiohttp.ClientSession(headers=headers, timeout=timeout,
                                     connector=aiohttp.TCPConnector(limit=limit.maximum)) as session:
        async def worker() -> None:
            for spec, headline in pending:  # workers share one iterator: each job goes to exactly one
                key = spec.cache_key(headline)
                try:
                    answer = await ask(session, url, spec.body(headline), settings, stats, gate)
                    # concurrency (recorded in the answer): its share of the endpoint's time is latency / concurrency
                    cache.put({"key": key, "model": spec.model, "headline": headline, **answer})
                except TeacherError as error:
                    failed[headline] = error.kind
                    stats.failures[error.kind] = stats.failures.get(error.kind, 0) + 1
                on_done()

        await asyncio.gather(*(worker() for _ in range(limit.maximum)))
    stats.limit_summary, stats.limit_history = limit.summary(), limit.history
    return stats, failed


def parse_answer(content: str) -> dict:
    """The teacher's answer as two parallel lists (mentions, names), repeats dropped; invalid answers are kept
    with the reason, never dropped."""
    try:
        data = orjson.loads(content)
    except orjson.JSONDecodeError as error:
        return {"valid": False, "error": f"invalid_json: {error.msg}", "result": [], "normalized_result": []}
    try:
        companies = Companies.model_validate(data).companies
    except ValidationError:
        return {"valid": False, "error": "schema: expected {\"companies\": [{\"mention\": ..., \"name\": ...}]}",
                "result": [], "normalized_result": []}
    pairs = {c.mention: c.name for c in reversed(companies)}  # reversed: the first name given for a mention wins
    mentions = list(dict.fromkeys(c.mention for c in companies))
    return {"valid": True, "error": None, "result": mentions, "normalized_result": [pairs[m] for m in mentions]}
