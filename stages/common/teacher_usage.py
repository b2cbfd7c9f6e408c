"""What the teacher's answers cost: tokens, retries, latencies, endpoint time and price.

Every figure comes from the answers themselves (each records the concurrency it was asked under), so
metrics depend on the cache, never on today's params or on how a particular run went.
"""
from __future__ import annotations

import math
from collections.abc import Iterable

from stages.common.stage_params import Cost


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)], 3)


def usage_totals(answers: Iterable[dict]) -> dict:
    """Tokens, retries, latencies and endpoint seconds of these answers, in one pass (they may stream from
    disk). An answer held 1/concurrency of the endpoint for its latency."""
    count = prompt_tokens = completion_tokens = retries = endpoint_s = 0
    latencies, limits = [], []
    for answer in answers:
        usage = answer.get("usage") or {}
        count += 1
        prompt_tokens += usage.get("prompt_tokens", 0)
        completion_tokens += usage.get("completion_tokens", 0)
        retries += answer.get("attempts", 1) - 1
        if answer.get("latency_s") is not None:
            latencies.append(answer["latency_s"])
            limits.append(answer.get("concurrency", 1))
            endpoint_s += answer["latency_s"] / limits[-1]
    concurrency = {"min": min(limits), "max": max(limits), "mean": round(sum(limits) / len(limits), 2)} \
        if limits else {}
    return {"answers": count, "prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "retries": retries,
            "latency_s": {"p50": percentile(latencies, 0.5), "p95": percentile(latencies, 0.95),
                          "p99": percentile(latencies, 0.99), "total": round(sum(latencies), 3)},
            "endpoint_s": endpoint_s, "concurrency": concurrency}


def concurrency_points(answers: Iterable[dict], count: int, max_points: int = 1000) -> list[dict]:
    """Plot data: the limit each of the `count` answers ran under, in the order they arrived (at most
    max_points)."""
    step = max(1, -(-count // max_points))
    return [{"answer": i, "concurrency": a.get("concurrency", 1)} for i, a in enumerate(answers) if i % step == 0]


def estimate_cost(prompt_tokens: float, completion_tokens: float, endpoint_s: float, cost: Cost) -> dict:
    """Endpoint hours at the hourly price, or token prices if given."""
    hours = endpoint_s / 3600
    if cost.usd_per_million_prompt_tokens is not None:
        usd = (prompt_tokens * cost.usd_per_million_prompt_tokens
               + completion_tokens * (cost.usd_per_million_completion_tokens or 0)) / 1e6
    else:
        usd = hours * (cost.usd_per_hour or 0.0)
    return {"endpoint_hours": round(hours, 4), "estimated_cost_usd": round(usd, 4), "usd": usd}
