"""The endpoint a run asks, any OpenAI-compatible chat endpoint (POST {base_url}/v1/chat/completions): its token,
the model it serves, the bundled llama.cpp teacher started when first needed, and batches of requests that share
one adaptive limit; each answer is filed in the answer cache under its request's key."""

from __future__ import annotations

import asyncio
import contextlib
import os
import urllib.parse
import urllib.request
from array import array
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace

import aiohttp
import orjson
from tqdm import tqdm

from stages.core.errors import EndpointError
from stages.core.stage_params import Endpoint, LlmLabelParams
from stages.http.answer_cache import AnswerCache
from stages.http.client import RETRYABLE_KINDS, ClientSettings, Gate, RunStats, ask, ask_each
from stages.http.concurrency import AdaptiveLimit
from stages.teacher.local_server import local_teacher
from stages.teacher.replies import reply_answer
from stages.teacher.request import RequestSpec
from stages.teacher.usage import percentile

LOCAL = "local"  # endpoint.base_url value that starts the bundled llama.cpp teacher
LOOPBACK = {"localhost", "127.0.0.1", "::1"}


class ModelMismatch(Exception):
    """The server says another model answered than the one the cache key names: its answer is kept under that
    model's key, and the run stops before more are filed under the wrong one."""


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


def refuse_other_model(base_url: str, model: str, token: str | None) -> None:
    """The cache key names params' model: an endpoint serving another one (TGI answers to any `model` string)
    must be named by what it serves, or two endpoints both called "tgi" would share answers."""
    served = served_models(base_url, token)
    if served and model not in served:
        raise EndpointError(
            f"llm_label: {base_url} serves {', '.join(served)}, but llm_label.endpoint.model is "
            f"'{model}'; set it to the served id (it is part of every answer's cache key)"
        )


class Asker:
    """Asks the teacher for a batch's missing answers. The endpoint (the bundled one is started when first
    needed), the token and the adaptive limit are set up once and shared by every batch."""

    def __init__(self, params: LlmLabelParams, cache: AnswerCache, stack: contextlib.ExitStack, progress: tqdm):
        self.params, self.cache, self.stack, self.progress = params, cache, stack, progress
        self.settings: ClientSettings | None = None
        self.limit: AdaptiveLimit | None = None
        self.calls = self.retries = 0
        self.latencies_s = array("d")
        self.failure_kinds: Counter[str] = Counter()

    def _connect(self) -> None:
        endpoint, local = self.params.endpoint, self.params.endpoint.base_url == LOCAL
        token = endpoint_token(endpoint, os.environ)
        url = (
            self.stack.enter_context(local_teacher(endpoint.model, threads=self.params.local_threads))
            if local
            else endpoint.base_url
        )
        if not local:
            refuse_other_model(url, endpoint.model, token)
        self.settings = ClientSettings(
            base_url=url,
            token=token,
            concurrency=self.params.concurrency,
            timeout_s=self.params.timeout_s,
            max_attempts=self.params.max_attempts,
            check_served_model=not local,
        )
        self.limit = self.settings.limit()

    def ask(self, todo: list[tuple[RequestSpec, str, dict]]) -> dict[str, str]:
        """Every missing answer of a batch; returns the error kind of each headline that still failed."""
        if not todo:
            return {}
        if self.settings is None:
            self._connect()
        assert self.settings is not None  # _connect set it
        samples = self.params.self_consistency.samples
        share = 1 if samples == 1 else 1 / samples  # the bar counts headlines
        stats, failures = asyncio.run(
            ask_all(todo, self.cache, self.settings, lambda: self.progress.update(share), limit=self.limit)
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
