"""What the teacher's answers cost: tokens, retries, latencies, endpoint time and price.

Every figure comes from the answers themselves (each records the concurrency it was asked under), so
metrics depend on the cache, never on today's params or on how a particular run went.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Iterable, Sequence

import numpy as np

from stages.core.stage_params import Cost


def percentile(values: Sequence[float], q: float) -> float | None:
    if not len(values):
        return None
    ordered = np.sort(np.asarray(values, dtype=float))  # an array('d') of a million latencies: no float objects
    return round(float(ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)]), 3)


class UsageTotals:
    """Tokens, retries, latencies and endpoint seconds of answers added one at a time (they stream from disk):
    a few bytes an answer. An answer held 1/concurrency of the endpoint for its latency."""

    def __init__(self):
        self.count = self.prompt_tokens = self.completion_tokens = self.retries = 0
        self.endpoint_s = 0.0
        self.latencies, self.limits = array("d"), array("l")  # of the answers that record a latency
        self.every_limit = array("l")  # of every answer, in the order added

    def add(self, answer: dict) -> None:
        usage = answer.get("usage") or {}
        self.count += 1
        self.prompt_tokens += usage.get("prompt_tokens", 0)
        self.completion_tokens += usage.get("completion_tokens", 0)
        self.retries += answer.get("attempts", 1) - 1
        self.every_limit.append(answer.get("concurrency", 1))
        if answer.get("latency_s") is not None:
            self.latencies.append(answer["latency_s"])
            self.limits.append(answer.get("concurrency", 1))
            self.endpoint_s += answer["latency_s"] / self.limits[-1]

    def totals(self) -> dict:
        limits = self.limits
        concurrency = (
            {"min": min(limits), "max": max(limits), "mean": round(sum(limits) / len(limits), 2)} if limits else {}
        )
        return {
            "answers": self.count,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "retries": self.retries,
            "latency_s": {
                "p50": percentile(self.latencies, 0.5),
                "p95": percentile(self.latencies, 0.95),
                "p99": percentile(self.latencies, 0.99),
                "total": round(sum(self.latencies), 3),
                "answers": len(self.latencies),  # those that record one: answers seeded from a remote do not
            },
            "endpoint_s": self.endpoint_s,
            "concurrency": concurrency,
        }

    def concurrency_points(self, max_points: int = 1000) -> list[dict]:
        """Plot data: the limit each answer ran under, in the order added (at most max_points)."""
        step = max(1, -(-len(self.every_limit) // max_points))
        return [{"answer": i, "concurrency": self.every_limit[i]} for i in range(0, len(self.every_limit), step)]


def usage_totals(answers: Iterable[dict]) -> dict:
    usage = UsageTotals()
    for answer in answers:
        usage.add(answer)
    return usage.totals()


def estimate_cost(prompt_tokens: float, completion_tokens: float, endpoint_s: float, cost: Cost) -> dict:
    """Endpoint hours at the hourly price, or token prices if given."""
    hours = endpoint_s / 3600
    if cost.usd_per_million_prompt_tokens is not None:
        usd = (
            prompt_tokens * cost.usd_per_million_prompt_tokens
            + completion_tokens * (cost.usd_per_million_completion_tokens or 0)
        ) / 1e6
    else:
        usd = hours * (cost.usd_per_hour or 0.0)
    return {"endpoint_hours": round(hours, 4), "estimated_cost_usd": round(usd, 4), "usd": usd}
