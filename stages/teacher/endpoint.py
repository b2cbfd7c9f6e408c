"""The endpoint a run asks, any OpenAI-compatible chat endpoint (POST {base_url}/v1/chat/completions): its token,
the model it serves, the bundled llama.cpp teacher started when first needed, and batches of requests that share
one adaptive limit; each answer is filed in the answer cache under its request's key."""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import os
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from array import array
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from typing import Protocol

import aiohttp
import orjson
from tqdm import tqdm

from stages.core.errors import EndpointError, PipelineError
from stages.core.io import log
from stages.core.stage_params import Endpoint, LlmLabelParams
from stages.http.answer_cache import AnswerCache, answer_record
from stages.http.client import RETRYABLE_KINDS, ClientSettings, Gate, RunStats, ask, ask_each
from stages.http.concurrency import AdaptiveLimit
from stages.teacher.local_server import local_teacher
from stages.teacher.replies import reply_answer
from stages.teacher.request import RequestSpec
from stages.teacher.usage import UsageTotals, estimate_cost, percentile

BUDGET_CHUNK = 4  # with a budget, requests go in chunks of this many times concurrency.max, checked between chunks


class BudgetReached(PipelineError):
    """The next request would spend past llm_label.budget_usd: the run stops, every answer bought is cached."""

    def __init__(self, budget: float, spent: float, bought: int, per_answer: float | None):
        self.budget, self.spent, self.bought, self.per_answer = budget, spent, bought, per_answer
        super().__init__(f"llm_label.budget_usd {budget} reached: ~{spent:.4f} USD spent")

    def explain(self, remaining: int) -> str:
        """One line: how far the run got and what the rest would cost."""
        rest = (
            f"~{remaining * self.per_answer:.4f} USD more at ~{self.per_answer:.6f} USD an answer"
            if self.per_answer is not None
            else "at a price no answer has shown yet"
        )
        return (
            f"llm_label: stopped before passing llm_label.budget_usd {self.budget}: the answers used cost "
            f"~{self.spent:.4f} USD, {self.bought} of them bought by this run and cached; {remaining} requests "
            f"remain, {rest}. Raise llm_label.budget_usd (null: no cap) and `dvc repro`: nothing bought is asked again"
        )


class AnswerSink(Protocol):
    """Where ask_all puts each answer as it arrives: the answer store, or one that also counts what it costs."""

    def put(self, answer: dict) -> None: ...


class _Metered:
    """The answer store as ask_all sees it: every answer put is also counted (tokens, endpoint time)."""

    def __init__(self, cache: AnswerCache, usage: UsageTotals):
        self.cache, self.usage = cache, usage

    def put(self, answer: dict) -> None:
        self.cache.put(answer)
        self.usage.add(answer_record(answer))  # as the store keeps it: a reply's null token counts are none


LOCAL = "local"  # endpoint.base_url value that starts the bundled llama.cpp teacher
LOOPBACK = {"localhost", "127.0.0.1", "::1"}
PREFLIGHT_TIMEOUT_S = 10.0  # a dead endpoint fails in seconds, not after every headline's retries
# Asked the way the chat client asks (aiohttp ignores proxy variables): no proxy, so both reach the same server.
DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class ModelMismatch(Exception):
    """The server says another model answered than the one the cache key names: its answer is kept under that
    model's key, and the run stops before more are filed under the wrong one."""


def api_url(base_url: str, route: str) -> str:
    """The URL of an OpenAI route ("chat/completions", "models") under a base URL written with or without /v1
    (vLLM and OpenAI document theirs with)."""
    return f"{base_url.rstrip('/').removesuffix('/v1')}/v1/{route}"


def listed_models(body: bytes) -> list[str] | None:
    """The model ids of a /v1/models reply ({"data": [{"id": ...}]}), or None when it lists none."""
    try:
        listed = orjson.loads(body).get("data")
        ids = [m["id"] for m in listed if isinstance(m, dict) and isinstance(m.get("id"), str)]
    except (ValueError, AttributeError, TypeError):
        return None
    return ids or None


def get_models(base_url: str, token: str | None, timeout_s: float) -> bytes:
    """GET /v1/models (TGI, vLLM, llama.cpp and OpenAI all serve it); urllib's errors go to the caller."""
    request = urllib.request.Request(
        api_url(base_url, "models"), headers={"Authorization": f"Bearer {token}"} if token else {}
    )
    with DIRECT.open(request, timeout=timeout_s) as response:
        return response.read()


def served_models(base_url: str, token: str | None, timeout_s: float = 10) -> list[str] | None:
    """The model ids the endpoint lists at /v1/models, or None when it lists none or cannot be asked: the
    answers' own `model` field is checked all the same."""
    try:
        return listed_models(get_models(base_url, token, timeout_s))
    except (OSError, http.client.HTTPException):
        return None


def filed_under(spec: RequestSpec, body: dict, answer: dict, settings: ClientSettings) -> tuple[str, str]:
    """(cache key, model) an answer is filed under: the spec's, or the served model's when the server says another
    one answered (then the run stops: ModelMismatch)."""
    served = answer.get("served_model")
    if not settings.check_served_model or served in (None, spec.model):
        return spec.body_key(body), spec.model
    return replace(spec, model=served).body_key({**body, "model": served}), served


async def ask_all(
    jobs: Iterable[tuple[RequestSpec, str] | tuple[RequestSpec, str, dict]],
    cache: AnswerSink,
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
        reply = await ask(session, url, body, settings, stats, gate, reply_answer)
        key, model = filed_under(spec, body, reply, settings)
        # concurrency (recorded in the answer): its share of the endpoint's time is latency / concurrency
        cache.put({"key": key, "model": model, "headline": headline, **reply})
        if model != spec.model:
            raise ModelMismatch(
                f"the endpoint answered as model '{model}', but llm_label.endpoint.model is '{spec.model}'"
            )

    return await ask_each(jobs, settings, answer, lambda job: job[1], on_done, limit)


def endpoint_token(endpoint: Endpoint, environ: Mapping[str, str]) -> str | None:
    """The bearer token from the variable params name; a remote endpoint without it fails before any call."""
    token = environ.get(endpoint.token_env) if endpoint.token_env else None
    local = endpoint.base_url == LOCAL or urllib.parse.urlparse(endpoint.base_url).hostname in LOOPBACK
    if endpoint.token_env and not token and not local:
        raise EndpointError(
            f"llm_label: the environment variable {endpoint.token_env} (llm_label.endpoint.token_env) "
            f"is not set; export it with the token for {endpoint.base_url}, or set token_env: null if "
            f"the endpoint needs none"
        )
    return token


def describe_failures(failures: dict[str, str], max_attempts: int) -> str:
    """'3 headline(s) failed: timeout x2 after 5 attempts each, http_400 x1 (not retryable)'."""
    kinds = Counter(failures.values())
    return f"{len(failures)} headline(s) failed: " + ", ".join(
        f"{kind} x{count} " + (f"after {max_attempts} attempts each" if kind in RETRYABLE_KINDS else "(not retryable)")
        for kind, count in sorted(kinds.items())
    )


def refuse_other_model(base_url: str, model: str, token: str | None, served: list[str] | None = None) -> None:
    """The cache key names params' model: an endpoint serving another one (TGI answers to any `model` string)
    must be named by what it serves, or two endpoints both called "tgi" would share answers. `served`: the ids
    the endpoint listed, when the caller asked already."""
    served = served if served is not None else served_models(base_url, token)
    if served and model not in served:
        raise EndpointError(
            f"llm_label: {base_url} serves {', '.join(served)}, but llm_label.endpoint.model is "
            f"'{model}'; set it to the served id (it is part of every answer's cache key)"
        )


def unreachable_reason(error: OSError | http.client.HTTPException, timeout_s: float) -> str:
    """Why a request got no HTTP answer, in a few words: connection refused, host not found, no answer in N s."""
    reason = error.reason if isinstance(error, urllib.error.URLError) else error
    if isinstance(reason, http.client.HTTPException):
        return f"not an HTTP answer: {type(reason).__name__}"
    if isinstance(reason, ConnectionRefusedError):
        return "connection refused: nothing listens there"
    if isinstance(reason, socket.gaierror):
        return f"host not found: {reason.strerror or reason}"
    if isinstance(reason, TimeoutError):
        return f"no answer within {timeout_s:g} s"
    return str(reason) or type(reason).__name__


def token_refused(endpoint: Endpoint, token: str | None, status: int) -> str:
    """The one line for a 401/403: which token was sent (never the token) and the param to fix."""
    where = f"{endpoint.base_url} answered HTTP {status} at {api_url(endpoint.base_url, 'models')}"
    if token:
        return (
            f"llm_label: {where}: the token in ${endpoint.token_env} was refused; put a valid token for this "
            f"endpoint in {endpoint.token_env} (the variable llm_label.endpoint.token_env names)"
        )
    if endpoint.token_env:
        return (
            f"llm_label: {where}: it wants a token and ${endpoint.token_env} (llm_label.endpoint.token_env) "
            f"is not set; export it with the endpoint's token"
        )
    return (
        f"llm_label: {where}: it wants a token and none was sent; set llm_label.endpoint.token_env to the "
        f"environment variable that holds it"
    )


def preflight(
    endpoint: Endpoint, environ: Mapping[str, str], timeout_s: float = PREFLIGHT_TIMEOUT_S
) -> tuple[str | None, str]:
    """Before the first paid request to a remote endpoint, one quick GET /v1/models: the endpoint answers, takes
    the token and serves params' model (where it lists its models; one that does not, 404 or any other status
    than 401/403, passes, and each answer's `model` field is checked instead). Returns the token and a one-line
    account of what was checked ("llm_label: preflight: <url> reachable ..."); a failure is one line
    (EndpointError) naming the URL and the param to fix."""
    token = endpoint_token(endpoint, environ)
    started = time.monotonic()
    try:
        served = listed_models(get_models(endpoint.base_url, token, timeout_s))
        status = 200
    except urllib.error.HTTPError as error:
        if error.code in (401, 403):
            raise EndpointError(token_refused(endpoint, token, error.code)) from None
        served, status = None, error.code
    except (OSError, http.client.HTTPException) as error:  # refused, no such host, timeout, TLS: no HTTP answer
        raise EndpointError(
            f"llm_label: cannot reach {endpoint.base_url} ({unreachable_reason(error, timeout_s)}); check "
            f"llm_label.endpoint.base_url and that the endpoint is running"
        ) from None
    answered = f"reachable (GET /v1/models: HTTP {status} in {time.monotonic() - started:.2f} s)"
    if token:
        auth = f"the token in ${endpoint.token_env} " + ("accepted" if status == 200 else "not refused")
    else:
        auth = "no token sent" + (", none asked for" if status == 200 else "")
    refuse_other_model(endpoint.base_url, endpoint.model, token, served or [])
    checked = f"serves '{endpoint.model}'" if served else "lists no model: each answer's model is checked instead"
    return token, f"llm_label: preflight: {endpoint.base_url} {answered}, {auth}, {checked}"


class Asker:
    """Asks the teacher for a batch's missing answers. The endpoint (the bundled one is started when first
    needed), the token and the adaptive limit are set up once and shared by every batch."""

    def __init__(self, params: LlmLabelParams, cache: AnswerCache, stack: contextlib.ExitStack, progress: tqdm):
        self.params, self.cache, self.stack, self.progress = params, cache, stack, progress
        # With llm_label.budget_usd: what every answer the run uses costs (cached ones as their records say,
        # added by the caller through `used`), and what the answers bought by this run cost
        self.used, self.bought = UsageTotals(), UsageTotals()
        self.settings: ClientSettings | None = None
        self.limit: AdaptiveLimit | None = None
        self.calls = self.retries = 0
        self.latencies_s = array("d")
        self.failure_kinds: Counter[str] = Counter()

    def _connect(self) -> None:
        endpoint, local = self.params.endpoint, self.params.endpoint.base_url == LOCAL
        if local:  # started here: it needs no other check
            token = endpoint_token(endpoint, os.environ)
            url = self.stack.enter_context(local_teacher(endpoint.model, threads=self.params.local_threads))
        else:  # before the first paid request: reachable, token taken, the model served
            token, checked = preflight(endpoint, os.environ)
            log.info("%s", checked)
            url = endpoint.base_url
        self.settings = ClientSettings(
            base_url=url,
            token=token,
            concurrency=self.params.concurrency,
            timeout_s=self.params.timeout_s,
            max_attempts=self.params.max_attempts,
            check_served_model=not local,
        )
        self.limit = self.settings.limit()

    def cost(self, usage: UsageTotals) -> float:
        return estimate_cost(usage.prompt_tokens, usage.completion_tokens, usage.endpoint_s, self.params.cost)["usd"]

    def per_answer(self) -> float | None:
        """What an answer costs: this run's bought ones on average, else the cached ones', else the hourly price
        at llm_label.expected_headlines_per_s; None when nothing says (per-token prices, no answer yet)."""
        for usage in (self.bought, self.used):
            if usage.count and (usage.endpoint_s or usage.prompt_tokens or usage.completion_tokens):
                return self.cost(usage) / usage.count
        hourly = self.params.cost.usd_per_hour
        if self.params.cost.usd_per_million_prompt_tokens is None and hourly is not None:
            return hourly / 3600 / (self.params.expected_headlines_per_s * self.params.self_consistency.samples)
        return None

    def affordable(self, wanted: int) -> int:
        """How many of `wanted` requests fit in what is left of the budget (1 to learn the price, when unknown)."""
        budget = self.params.budget_usd
        if budget is None:
            return wanted
        left, per = budget - self.cost(self.used) - self.cost(self.bought), self.per_answer()
        if left <= 0:
            return 0
        fits = 1 if per is None else wanted if per == 0 else int(left / per + 1e-9)
        return min(wanted, fits, BUDGET_CHUNK * self.params.concurrency.max)

    def ask(self, todo: list[tuple[RequestSpec, str, dict]]) -> dict[str, str]:
        """Every missing answer of a batch; returns the error kind of each headline that still failed. With a
        budget, in chunks that fit what is left of it; BudgetReached before a request that would pass it."""
        failures: dict[str, str] = {}
        while todo:
            room = self.affordable(len(todo))
            if room == 0:
                spent = self.cost(self.used) + self.cost(self.bought)
                raise BudgetReached(self.params.budget_usd or 0.0, spent, self.bought.count, self.per_answer())
            failures |= self._ask(todo[:room])
            todo = todo[room:]
        return failures

    def _ask(self, todo: list[tuple[RequestSpec, str, dict]]) -> dict[str, str]:
        if self.settings is None:
            self._connect()
        assert self.settings is not None  # _connect set it
        samples = self.params.self_consistency.samples
        share = 1 if samples == 1 else 1 / samples  # the bar counts headlines
        metered = _Metered(self.cache, self.bought)
        stats, failures = asyncio.run(
            ask_all(todo, metered, self.settings, lambda: self.progress.update(share), limit=self.limit)
        )
        self.calls, self.retries = self.calls + stats.calls, self.retries + stats.retries
        self.latencies_s.extend(stats.latencies_s)
        self.failure_kinds.update(stats.failures)
        return failures

    def summary(self) -> str:
        if self.settings is None:
            return "no calls (every answer cached)"
        assert self.limit is not None  # _connect set it with the settings
        return (
            f"{self.calls} calls ({self.retries} retries), p50 latency {percentile(self.latencies_s, 0.5)} s, "
            f"failures {dict(self.failure_kinds) or 'none'}; requests in flight {self.limit.summary()}"
        )
