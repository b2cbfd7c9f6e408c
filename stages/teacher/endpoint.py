"""The endpoint a run asks: its token, the model it serves, the bundled llama.cpp teacher started when first
needed, and batches of requests that share one adaptive limit."""

from __future__ import annotations

import asyncio
import contextlib
import os
import urllib.parse
from array import array
from collections import Counter

from tqdm import tqdm

from stages.core.stage_params import Endpoint, LlmLabelParams
from stages.http.answer_cache import AnswerCache
from stages.http.client import RETRYABLE_KINDS, ClientSettings, ask_all, served_models
from stages.teacher.local_server import local_teacher
from stages.teacher.request import RequestSpec
from stages.teacher.usage import percentile

LOCAL = "local"  # endpoint.base_url value that starts the bundled llama.cpp teacher
LOOPBACK = {"localhost", "127.0.0.1", "::1"}


def endpoint_token(endpoint: Endpoint, environ: dict) -> str | None:
    """The bearer token from the variable params name; a remote endpoint without it fails before any call."""
    token = environ.get(endpoint.token_env) if endpoint.token_env else None
    local = endpoint.base_url == LOCAL or urllib.parse.urlparse(endpoint.base_url).hostname in LOOPBACK
    if endpoint.token_env and not token and not local:
        raise SystemExit(
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
        raise SystemExit(
            f"llm_label: {base_url} serves {', '.join(served)}, but llm_label.endpoint.model is "
            f"'{model}'; set it to the served id (it is part of every answer's cache key)"
        )


class Asker:
    """Asks the teacher for a batch's missing answers. The endpoint (the bundled one is started when first
    needed), the token and the adaptive limit are set up once and shared by every batch."""

    def __init__(self, params: LlmLabelParams, cache: AnswerCache, stack: contextlib.ExitStack, progress: tqdm):
        self.params, self.cache, self.stack, self.progress = params, cache, stack, progress
        self.settings: ClientSettings | None = None
        self.limit = None
        self.calls = self.retries = 0
        self.latencies_s, self.failure_kinds = array("d"), Counter()

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
        return (
            f"{self.calls} calls ({self.retries} retries), p50 latency {percentile(self.latencies_s, 0.5)} s, "
            f"failures {dict(self.failure_kinds) or 'none'}; requests in flight {self.limit.summary()}"
        )
