"""The async client for any OpenAI-compatible chat endpoint: POST {base_url}/v1/chat/completions with
retries, backoff and an adaptive number of requests in flight; answers go to the answer cache."""
from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import aiohttp

from stages.common.answer_cache import AnswerCache
from stages.common.concurrency import AdaptiveLimit, Gate
from stages.common.stage_params import ConcurrencyRange
from stages.common.teacher_request import BadReply, RequestSpec, reply_answer


class TeacherError(Exception):
    def __init__(self, kind: str, detail: str = ""):
        super().__init__(f"{kind}: {detail}" if detail else kind)
        self.kind = kind


RETRYABLE_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}
OVERLOAD_STATUS = {429, 503}  # the endpoint is full: fewer requests in flight
RETRYABLE_KINDS = frozenset({"timeout", "connection", "bad_response",
                             *(f"http_{status}" for status in RETRYABLE_STATUS)})


@dataclass
class ClientSettings:
    base_url: str
    # requests in flight: a range adapts to the endpoint's capacity (see concurrency.py); a number fixes it
    concurrency: ConcurrencyRange | int
    timeout_s: float
    max_attempts: int
    token: str | None = field(default=None, repr=False)  # a secret: it goes in the Authorization header only
    backoff_s: float = 1.0
    max_backoff_s: float = 60.0

    def limit(self) -> AdaptiveLimit:
        c = self.concurrency
        if isinstance(c, int):
            return AdaptiveLimit(minimum=c, start=c, maximum=c)
        return AdaptiveLimit(minimum=c.min, start=c.start, maximum=c.max)


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
    one). Returns content, finish_reason, usage and the limit it ran under (an answer with no text carries
    `error`: see reply_answer); raises TeacherError. A 200 that is no chat completion (BadReply) is retried
    like a 500: nothing of it is an answer, and a proxy's error page is usually gone on the next attempt."""
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
                    raw = await response.read()  # bytes: a body that is not UTF-8 is a bad reply, not a crash
                    if response.status == 200:
                        answer = reply_answer(raw)
                        latency = time.perf_counter() - started
                        stats.latencies_s.append(latency)
                        concurrency = int(gate.limit.limit)
                        gate.limit.on_success(latency, gate.in_flight)
                        return {**answer, "latency_s": round(latency, 3), "attempts": attempt + 1,
                                "concurrency": concurrency}
                    last = TeacherError(f"http_{response.status}", raw[:200].decode(errors="replace"))
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
        except BadReply as error:
            last = TeacherError("bad_response", str(error)[:200])
        if attempt + 1 < settings.max_attempts:
            await asyncio.sleep(retry_delay(attempt, settings, retry_after))
    raise last


def chat_url(base_url: str) -> str:
    """The chat-completions URL of a base URL written with or without /v1 (vLLM and OpenAI document theirs with)."""
    return base_url.rstrip("/").removesuffix("/v1") + "/v1/chat/completions"


async def ask_all(jobs: Iterable[tuple[RequestSpec, str]], cache: AnswerCache, settings: ClientSettings,
                  on_done: Callable[[], None] = lambda: None) -> tuple[RunStats, dict[str, str]]:
    """Ask every (spec, headline) job with at most the adaptive limit of requests in flight; callers pass cache
    misses.

    Jobs are pulled lazily, so memory does not grow with the input, and a slow answer holds up only its
    own worker. Answers go to the cache as they arrive; returns run stats (with how the limit moved) and
    the error kind per failed headline. Anything else (a full disk, a bug) stops the run, but only after
    the requests in flight are answered and cached: it is raised once every worker has stopped.
    """
    pending = iter(jobs)
    stats, failed = RunStats(), {}
    fatal: list[Exception] = []
    limit = settings.limit()
    gate = Gate(limit)
    url = chat_url(settings.base_url)
    headers = {"Authorization": f"Bearer {settings.token}"} if settings.token else {}
    timeout = aiohttp.ClientTimeout(total=settings.timeout_s)

    async with aiohttp.ClientSession(headers=headers, timeout=timeout,
                                     connector=aiohttp.TCPConnector(limit=limit.maximum)) as session:
        async def worker() -> None:
            for spec, headline in pending:  # workers share one iterator: each job goes to exactly one
                if fatal:
                    return
                key = spec.cache_key(headline)
                try:
                    answer = await ask(session, url, spec.body(headline), settings, stats, gate)
                    # concurrency (recorded in the answer): its share of the endpoint's time is latency / concurrency
                    cache.put({"key": key, "model": spec.model, "headline": headline, **answer})
                except TeacherError as error:
                    failed[headline] = error.kind
                    stats.failures[error.kind] = stats.failures.get(error.kind, 0) + 1
                except Exception as error:  # raised below, once the other workers have cached what is in flight
                    fatal.append(error)
                    return
                on_done()

        await asyncio.gather(*(worker() for _ in range(limit.maximum)))
    stats.limit_summary, stats.limit_history = limit.summary(), limit.history
    if fatal:
        raise fatal[0]
    return stats, failed
