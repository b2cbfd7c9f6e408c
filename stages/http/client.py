"""The async HTTP client every endpoint is asked through (the teacher's chat completions, a served student):
JSON POSTs with retries, backoff and an adaptive number of requests in flight. It knows nothing of what it asks:
callers give the body, read the reply (read_reply) and file the answer."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

import aiohttp
import orjson

from stages.core.stage_params import ConcurrencyRange
from stages.http.concurrency import AdaptiveLimit, Gate


class BadReply(ValueError):
    """A 200 whose body is not what the caller reads (read_reply raises it): a proxy's error page or a cut transfer
    says nothing about the request, so the client retries it like a 500."""


class RequestError(Exception):
    """A request that failed for good; `kind` (timeout, connection, bad_response, http_<status>) is what callers
    count and report."""

    def __init__(self, kind: str, detail: str = ""):
        super().__init__(f"{kind}: {detail}" if detail else kind)
        self.kind = kind


class EndpointDown(Exception):
    """Nothing but timeouts and refused connections for longer than settings.give_up_after_s: the run stops (with
    every answer received kept) instead of retrying a dead or hung URL for hours."""


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
    give_up_after_s: float | None = None  # EndpointDown after this long with nothing but timeouts/connection errors

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
    down_since: float | None = None  # when the current run of timeouts and connection errors began
    down_attempts: int = 0  # and how many attempts it holds

    def went_down(self, settings: ClientSettings, url: str) -> None:
        """Count a timeout or connection error; raise EndpointDown once they have lasted give_up_after_s."""
        now = time.monotonic()
        self.down_since = self.down_since or now
        self.down_attempts += 1
        if settings.give_up_after_s is not None and now - self.down_since >= settings.give_up_after_s:
            raise EndpointDown(
                f"{url}: nothing but timeouts and connection errors for {now - self.down_since:.0f}s "
                f"({self.down_attempts} attempts in a row); giving up"
            )

    def came_back(self) -> None:
        self.down_since, self.down_attempts = None, 0


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
    read_reply: Callable[[bytes], dict],
    check_headers: Callable[[Mapping[str, str]], None] = lambda headers: None,
) -> dict:
    """One chat completion (or, with another read_reply, any JSON POST) with retries, each attempt holding a
    permit of the gate (a retry waits without one). Returns content, finish_reason, usage (what read_reply reads
    of the reply) and the limit it ran under (an answer with no text carries `error`: see reply_answer); raises
    RequestError. A 200 that is no chat completion (BadReply) is retried like a 500: nothing of it is an answer,
    and a proxy's error page is usually gone on the next attempt. check_headers sees every response's headers
    first (what it raises stops the run: a server that says it is the wrong one). Timeouts and connection errors
    that last settings.give_up_after_s raise EndpointDown."""
    last = RequestError("unknown")
    for attempt in range(settings.max_attempts):
        if attempt:
            stats.retries += 1
        retry_after = None
        try:
            async with gate:
                started = time.perf_counter()
                stats.calls += 1
                async with session.post(url, json=body) as response:
                    stats.came_back()
                    check_headers(response.headers)
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
                    last = RequestError(f"http_{response.status}", raw[:200].decode(errors="replace"))
                    if response.status not in RETRYABLE_STATUS:
                        raise last
                    if response.status in OVERLOAD_STATUS:
                        gate.limit.on_rejection()
                    retry_after = response.headers.get("Retry-After")
        except TimeoutError:
            gate.limit.on_rejection()
            last = RequestError("timeout", f"no answer in {settings.timeout_s}s")
            stats.went_down(settings, url)
        except aiohttp.ClientError as error:
            last = RequestError("connection", str(error)[:200])
            stats.went_down(settings, url)
        except BadReply as error:
            last = RequestError("bad_response", str(error)[:200])
        if attempt + 1 < settings.max_attempts:
            await asyncio.sleep(retry_delay(attempt, settings, retry_after))
    raise last


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
    own worker. A RequestError fails its job: returns run stats (with how the limit moved) and the error kind
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
                except RequestError as error:
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
