"""The async client for any OpenAI-compatible chat endpoint: POST {base_url}/v1/chat/completions with
retries, backoff and an adaptive number of requests in flight; answers go to the answer cache."""

from __future__ import annotations

import asyncio
import random
import time
import urllib.request
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import TypeVar

import aiohttp
import orjson

from stages.core.stage_params import ConcurrencyRange
from stages.http.answer_cache import AnswerCache
from stages.http.concurrency import AdaptiveLimit, Gate
from stages.teacher.request import BadReply, RequestSpec, reply_answer


class ModelMismatch(Exception):
    """The server says another model answered than the one the cache key names: its answer is kept under that
    model's key, and the run stops before more are filed under the wrong one."""


class TeacherError(Exception):
    def __init__(self, kind: str, detail: str = ""):
        super().__init__(f"{kind}: {detail}" if detail else kind)
        self.kind = kind


RETRYABLE_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}
OVERLOAD_STATUS = {429, 503}  # the endpoint is full: fewer requests in flight
RETRYABLE_KINDS = frozenset(
    {"timeout", "connection", "bad_response", *(f"http_{status}" for status in RETRYABLE_STATUS)}
)


@dataclass
class ClientSettings:
    base_url: str
    # requests in flight: a range adapts to the endpoint's capacity (see concurrency.py); a number fixes it
    concurrency: ConcurrencyRange | int
    timeout_s: float
    max_attempts: int
    token: str | None = field(default=None, repr=False)  # a secret: it goes in the Authorization header only
    check_served_model: bool = True  # off for the bundled teacher, whose key names its weights instead
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
    limit_summary: dict = field(default_factory=dict)  # how the concurrency limit moved
    limit_history: list[tuple[float, int]] = field(default_factory=list)


def retry_delay(attempt: int, settings: ClientSettings, retry_after: str | None) -> float:
    """Server's Retry-After when given, else exponential backoff with full jitter."""
    if retry_after:
        try:
            return min(float(retry_after), settings.max_backoff_s)
        except ValueError:
            pass
    return random.uniform(0, min(settings.max_backoff_s, settings.backoff_s * 2**attempt))


async def ask(
    session: aiohttp.ClientSession,
    url: str,
    body: dict,
    settings: ClientSettings,
    stats: RunStats,
    gate: Gate,
    read_reply: Callable[[bytes], dict] = reply_answer,
) -> dict:
    """One chat completion (or, with another read_reply, any JSON POST) with retries, each attempt holding a
    permit of the gate (a retry waits without one). Returns content, finish_reason, usage (what read_reply reads
    of the reply) and the limit it ran under (an answer with no text carries `error`: see reply_answer); raises
    TeacherError. A 200 that is no chat completion (BadReply) is retried like a 500: nothing of it is an answer,
    and a proxy's error page is usually gone on the next attempt."""
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
                        answer = read_reply(raw)
                        latency = time.perf_counter() - started
                        stats.latencies_s.append(latency)
                        concurrency = int(gate.limit.limit)
                        gate.limit.on_success(latency, gate.in_flight)
                        return {
                            **answer,
                            "latency_s": round(latency, 3),
                            "attempts": attempt + 1,
                            "concurrency": concurrency,
                        }
                    last = TeacherError(f"http_{response.status}", raw[:200].decode(errors="replace"))
                    if response.status not in RETRYABLE_STATUS:
                        raise last
                    if response.status in OVERLOAD_STATUS:
                        gate.limit.on_rejection()
                    retry_after = response.headers.get("Retry-After")
        except TimeoutError:
            gate.limit.on_rejection()
            last = TeacherError("timeout", f"no answer in {settings.timeout_s}s")
        except aiohttp.ClientError as error:
            last = TeacherError("connection", str(error)[:200])
        except BadReply as error:
            last = TeacherError("bad_response", str(error)[:200])
        if attempt + 1 < settings.max_attempts:
            await asyncio.sleep(retry_delay(attempt, settings, retry_after))
    raise last


def api_url(base_url: str, route: str) -> str:
    """The URL of an OpenAI route ("chat/completions", "models") under a base URL written with or without /v1
    (vLLM and OpenAI document theirs with)."""
    return f"{base_url.rstrip('/').removesuffix('/v1')}/v1/{route}"


def served_models(base_url: str, token: str | None, timeout_s: float = 10) -> list[str] | None:
    """The model ids the endpoint lists at /v1/models (TGI, vLLM, llama.cpp and OpenAI all serve it), or None
    when it lists none or cannot be asked: the answers' own `model` field is checked all the same."""
    request = urllib.request.Request(
        api_url(base_url, "models"), headers={"Authorization": f"Bearer {token}"} if token else {}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            listed = orjson.loads(response.read()).get("data")
        ids = [m["id"] for m in listed if isinstance(m, dict) and isinstance(m.get("id"), str)]
    except (OSError, ValueError, AttributeError, TypeError):
        return None
    return ids or None


def filed_under(spec: RequestSpec, body: dict, answer: dict, settings: ClientSettings) -> tuple[str, str]:
    """(cache key, model) an answer is filed under: the spec's, or the served model's when the server says another
    one answered (then the run stops: ModelMismatch)."""
    served = answer.get("served_model")
    if not settings.check_served_model or served in (None, spec.model):
        return spec.body_key(body), spec.model
    return replace(spec, model=served).body_key({**body, "model": served}), served


async def ask_all(
    jobs: Iterable[tuple[RequestSpec, str] | tuple[RequestSpec, str, dict]],
    cache: AnswerCache,
    settings: ClientSettings,
    on_done: Callable[[], None] = lambda: None,
    limit: AdaptiveLimit | None = None,
) -> tuple[RunStats, dict[str, str]]:
    """Ask every (spec, headline) job (callers pass cache misses, with the request body as a third item where they
    built it already: building one takes a while); answers go to the cache as they arrive. Returns run stats and
    the error kind per failed headline (see ask_each). A caller asking in batches passes one `limit` to all of
    them, so what it learnt of the endpoint carries over."""
    url = api_url(settings.base_url, "chat/completions")

    async def answer(session: aiohttp.ClientSession, gate: Gate, stats: RunStats, job: tuple) -> None:
        spec, headline, *built = job
        body = built[0] if built else spec.body(headline)
        reply = await ask(session, url, body, settings, stats, gate)
        key, model = filed_under(spec, body, reply, settings)
        # concurrency (recorded in the answer): its share of the endpoint's time is latency / concurrency
        cache.put({"key": key, "model": model, "headline": headline, **reply})
        if model != spec.model:
            raise ModelMismatch(
                f"the endpoint answered as model '{model}', but llm_label.endpoint.model is '{spec.model}'"
            )

    return await ask_each(jobs, settings, answer, lambda job: job[1], on_done, limit)


Job = TypeVar("Job")


async def ask_each(
    jobs: Iterable[Job],
    settings: ClientSettings,
    answer: Callable[[aiohttp.ClientSession, Gate, RunStats, Job], Awaitable[None]],
    name: Callable[[Job], str],
    on_done: Callable[[], None] = lambda: None,
    limit: AdaptiveLimit | None = None,
) -> tuple[RunStats, dict[str, str]]:
    """answer(session, gate, stats, job) for every job, with at most the adaptive limit of requests in flight:
    the worker pool of ask_all, for any endpoint (`tag` POSTs batches to a served student through it, each
    answer calling `ask`).

    Jobs are pulled lazily, so memory does not grow with the input, and a slow answer holds up only its
    own worker. A TeacherError fails its job: returns run stats (with how the limit moved) and the error kind
    per name(job). Anything else (a full disk, a bug) stops the run, but only after the requests in flight are
    answered and cached: it is raised once every worker has stopped.
    """
    pending = iter(jobs)
    stats, failed = RunStats(), {}
    fatal: list[Exception] = []
    limit = limit or settings.limit()
    gate = Gate(limit)
    headers = {"Authorization": f"Bearer {settings.token}"} if settings.token else {}
    timeout = aiohttp.ClientTimeout(total=settings.timeout_s)

    async with aiohttp.ClientSession(
        headers=headers,
        timeout=timeout,
        json_serialize=lambda o: orjson.dumps(o).decode(),
        connector=aiohttp.TCPConnector(limit=limit.maximum),
    ) as session:

        async def worker() -> None:
            for job in pending:  # workers share one iterator: each job goes to exactly one
                if fatal:
                    return
                try:
                    await answer(session, gate, stats, job)
                except TeacherError as error:
                    failed[name(job)] = error.kind
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
