"""Does the teacher client follow an endpoint whose capacity changes during the run?

A local chat-completions server on 127.0.0.1 (its own process) answers in 50 ms, serves at most 4 requests
at once for its first 2,000 answers, 16 for the next 2,000 and 8 for the last 2,000, and answers 429 with
`Retry-After: 1` beyond that. The client labels 6,000 headlines through the real ask_all (cache writes
included): once with the adaptive limit (min 1, start 4, max 64), once fixed at 4 and once fixed at 32,
each against a fresh server. "Ideal" is a client that knew the capacity: 6,000 answers in
2000 * 0.05 * (1/4 + 1/16 + 1/8) s. Prints one JSON line.

Usage: python -m benchmarks.llm_label_capacity [--answers-per-phase 2000]  (the tests run --answers-per-phase 20)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import tempfile
import time
import urllib.request
from pathlib import Path

from aiohttp import web

from stages.core.stage_params import ConcurrencyRange
from stages.http.answer_cache import AnswerCache
from stages.http.client import ClientSettings
from stages.teacher.endpoint import ask_all
from stages.teacher.local_server import free_port
from stages.teacher.request import Prompt, RequestSpec

ROOT = Path(__file__).resolve().parents[1]

LATENCY_S = 0.05
CAPACITY = (4, 16, 8)
ANSWER = json.dumps({"companies": [{"mention": "Apple", "name": "Apple"}]})


def serve(port: int, per_phase: int, counts) -> None:
    """counts: shared [answered, rejected]."""
    in_flight = 0

    async def chat(request: web.Request) -> web.Response:
        nonlocal in_flight
        await request.read()
        capacity = CAPACITY[min(len(CAPACITY) - 1, counts[0] // per_phase)]
        if in_flight >= capacity:
            counts[1] += 1
            return web.Response(status=429, headers={"Retry-After": "1"}, text="over capacity")
        in_flight += 1
        try:
            await asyncio.sleep(LATENCY_S)
        finally:
            in_flight -= 1
        counts[0] += 1
        return web.json_response(
            {
                "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": ANSWER}}],
                "usage": {"prompt_tokens": 100, "completion_tokens": 12},
            }
        )

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_get("/v1/models", lambda request: web.json_response({"data": [{"id": "bench"}]}))
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


def run(concurrency: ConcurrencyRange, per_phase: int) -> dict:
    counts = multiprocessing.Array("l", 2)
    port = free_port()
    server = multiprocessing.Process(target=serve, args=(port, per_phase, counts), daemon=True)
    server.start()
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(url + "/v1/models", timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        spec = RequestSpec(
            model="bench",
            prompt=Prompt.load(ROOT / "data/prompts/company_ner.yaml"),
            response_format="none",
            generation={"temperature": 0.0, "max_tokens": 64, "seed": 0},
        )
        texts = [f"Apple Shares Up After Earnings Beat #{i}" for i in range(len(CAPACITY) * per_phase)]
        settings = ClientSettings(
            base_url=url, concurrency=concurrency, timeout_s=120, max_attempts=50, max_backoff_s=2
        )
        with tempfile.TemporaryDirectory() as scratch, AnswerCache(scratch) as cache:
            started = time.perf_counter()
            stats, failed = asyncio.run(ask_all(((spec, t) for t in texts), cache, settings))
            seconds = time.perf_counter() - started
            lost = sum(spec.cache_key(t) not in cache for t in texts)
    finally:
        server.kill()
    ideal_s = sum(per_phase * LATENCY_S / c for c in CAPACITY)
    return {
        "headlines_per_s": round(len(texts) / seconds, 1),
        "ideal_headlines_per_s": round(len(texts) / ideal_s, 1),
        "ratio": round(ideal_s / seconds, 3),
        "rejected_share": round(counts[1] / max(1, stats.calls), 4),
        "lost": lost,
        "failed": len(failed),
        "limit": stats.limit_summary,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--answers-per-phase", type=int, default=2000)
    args = parser.parse_args()
    adaptive = run(ConcurrencyRange(min=1, start=4, max=64), args.answers_per_phase)
    fixed_4 = run(ConcurrencyRange(min=4, start=4, max=4), args.answers_per_phase)
    fixed_32 = run(ConcurrencyRange(min=32, start=32, max=32), args.answers_per_phase)
    print(
        json.dumps(
            {
                **{
                    k: adaptive[k]
                    for k in ("headlines_per_s", "ideal_headlines_per_s", "ratio", "rejected_share", "lost")
                },
                "limit": adaptive["limit"],
                "fixed_4_ratio": fixed_4["ratio"],
                "fixed_4_rejected_share": fixed_4["rejected_share"],
                "fixed_32_ratio": fixed_32["ratio"],
                "fixed_32_rejected_share": fixed_32["rejected_share"],
                "fixed_32_lost": fixed_32["lost"],
            }
        )
    )


if __name__ == "__main__":
    main()
