"""Teacher client throughput against a zero-latency local chat-completions server.

In one run: (a) our client (stages.http.client.ask_all, cache writes included) and (b) a minimal raw
aiohttp loop sending the same --requests requests; then a child process streams --stream headlines
through the llm_label stage itself (its main: read, ask, cache, label table in batches, Parquet, metrics),
reports (c) the same command rerun with every answer cached (the labelling path of a cached `dvc repro`),
and gives (d) its peak RSS.
Prints one JSON line. Usage: python -m benchmarks.llm_label_throughput [--requests 20000] [--stream 200000]
(the test suite runs it with --requests 200 --stream 300)
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import polars as pl
import yaml
from aiohttp import web

from stages import llm_label
from stages.http.answer_cache import AnswerCache
from stages.http.client import ClientSettings
from stages.teacher.endpoint import ask_all
from stages.teacher.local_server import free_port, wait_until_up
from stages.teacher.request import Extractive, Prompt, RequestSpec

ROOT = Path(__file__).resolve().parents[1]
ANSWER = {
    "id": "b",
    "object": "chat.completion",
    "model": "bench",
    "choices": [
        {
            "index": 0,
            "finish_reason": "stop",
            "message": {
                "role": "assistant",
                "content": json.dumps({"companies": [{"mention": "Apple", "name": "Apple"}]}),
            },
        }
    ],
    "usage": {"prompt_tokens": 300, "completion_tokens": 15, "total_tokens": 315},
}
COMPANIES = ["Apple", "Tesla", "Visa", "Target", "Nvidia", "Boeing", "Oracle", "Intel"]


def serve(port: int) -> None:
    body = json.dumps(ANSWER).encode()

    async def chat(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(body=body, content_type="application/json")

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_get("/v1/models", lambda request: web.json_response({"data": [{"id": "bench"}]}))
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


def headlines(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [f"Apple And {rng.choice(COMPANIES)} Shares Up {i % 97}% After Earnings Beat #{i}" for i in range(n)]


def request_spec() -> RequestSpec:
    return RequestSpec(
        model="bench",
        prompt=Prompt.load(ROOT / "data/prompts/company_ner.yaml"),
        response_format="llama_cpp",
        generation={"temperature": 0.1, "seed": 0},
        extractive=Extractive(max_words=4, max_items=4, free_names=False, max_name_chars=40),
    )


async def raw_loop(url: str, spec: RequestSpec, texts: list[str], concurrency: int) -> None:
    semaphore = asyncio.Semaphore(concurrency)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:

        async def one(text: str) -> None:
            async with semaphore, session.post(url + "/v1/chat/completions", json=spec.body(text)) as response:
                await response.json()

        await asyncio.gather(*(one(t) for t in texts))


def ours(url: str, spec: RequestSpec, texts: list[str], cache_dir: Path, concurrency: int) -> None:
    settings = ClientSettings(base_url=url, concurrency=concurrency, timeout_s=120, max_attempts=5)
    with AnswerCache(cache_dir) as cache:
        asyncio.run(ask_all(((spec, t) for t in texts), cache, settings))


def stream(url: str, n: int, concurrency: int) -> None:
    """Child process: the llm_label stage itself (its main, params from a scratch params.yaml) over n headlines,
    for its peak RSS; then the same command again with every answer cached."""
    with tempfile.TemporaryDirectory() as scratch:
        params = yaml.safe_load((ROOT / "params.yaml").read_text())
        params["llm_label"].update(
            limit=None,
            prompt_file=str(ROOT / "data/prompts/company_ner.yaml"),
            concurrency={"min": concurrency, "start": concurrency, "max": concurrency},
        )
        params["llm_label"]["endpoint"].update(base_url=url, model="bench", token_env=None)
        (Path(scratch) / "params.yaml").write_text(yaml.safe_dump(params))
        pl.DataFrame(
            {
                "id": [f"{i:08d}" for i in range(n)],
                "text": headlines(n, seed=1),
                "date": [dt.date(2015, 1, 1)] * n,
                "source": ["bench"] * n,
            }
        ).write_parquet(Path(scratch) / "h.parquet")
        os.chdir(scratch)
        command = [
            "--headlines",
            "h.parquet",
            "--cache-dir",
            "cache",
            "--answers",
            "answers",
            "--out",
            "labels.parquet",
            "--metrics",
            "m.json",
            "--speed",
            "s.json",
            "--concurrency-plot",
            "c.csv",
        ]
        llm_label.main(command)
        cached_s = timed(llm_label.main, command)
    print(json.dumps({"cached_headlines_per_s": round(n / cached_s)}))


def timed(function, *args) -> float:
    started = time.perf_counter()
    function(*args)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--stream", type=int, default=200000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--stream-child", type=str, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        return serve(args.serve)
    if args.stream_child:
        return stream(args.stream_child, args.stream, args.concurrency)

    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "benchmarks.llm_label_throughput", "--serve", str(port)], cwd=ROOT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(url, server, 30)
        spec, texts = request_spec(), headlines(args.requests)
        raw_s = timed(lambda: asyncio.run(raw_loop(url, spec, texts, args.concurrency)))
        with tempfile.TemporaryDirectory() as scratch:
            ours_s = timed(ours, url, spec, texts, Path(scratch) / "cache", args.concurrency)
        child = subprocess.run(
            [
                sys.executable,
                "-m",
                "benchmarks.llm_label_throughput",
                "--stream-child",
                url,
                "--stream",
                str(args.stream),
                "--concurrency",
                str(args.concurrency),
            ],
            cwd=ROOT,
            check=True,
            capture_output=True,
            text=True,
        )
        peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # max over children: the streaming one
    finally:
        server.terminate()
        server.wait()
    print(
        json.dumps(
            {
                "headlines_per_s": round(args.requests / ours_s),
                "raw_http_per_s": round(args.requests / raw_s),
                **json.loads(child.stdout.strip().splitlines()[-1]),
                "peak_rss_mb": round(peak_kb / 1024),
                "requests": args.requests,
                "streamed": args.stream,
                "concurrency": args.concurrency,
            }
        )
    )


if __name__ == "__main__":
    main()
