"""The front of the case study's DAG at its scale: fetch -> llm_label -> cluster_sample -> split via `dvc repro`.

In a scratch copy of the repo with the case-study profile applied, a user's own CSV of --headlines synthetic
headlines (dated 2010-2020, ~15% naming no company, names drawn from a few thousand companies with suffix
variants) is labelled by a local OpenAI-compatible server (its own process) that answers after --latency-ms,
serves at most --capacity requests at once and answers 429 beyond that; the profile's adaptive concurrency
range finds it. Each stage runs as its own `dvc repro <stage>`, so every stage's time and peak RSS (its whole
process tree, dvc included) are measured apart.

client_share_of_wall: the fraction of llm_label's wall time in which the server had no request in flight,
i.e. what our own side (reading, keys, labelling, writing, dvc) cost on top of the endpoint's time. "plan" is
what `python -m stages.llm_label --plan` (make plan) said before the run: requests, tokens, minutes and USD at the
profile's endpoint price and expected speed (nothing cached yet, so a rough guess).
Prints one JSON line. Usage: python -m benchmarks.case_study_scale [--headlines 900000] [--sample-size 2714]
(the test suite runs it with --headlines 3000 --sample-size 100).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import polars as pl
from aiohttp import web

from scripts.worktree import copy_worktree
from stages.teacher.local_server import free_port, wait_until_up

ROOT = Path(__file__).resolve().parents[1]

MODEL = "meta-llama/Llama-3.1-70B-Instruct"  # what the profile names and the server says it serves
STAGES = ("fetch", "llm_label", "cluster_sample", "split")
ROOTS = [
    "Apex",
    "Borealis",
    "Cobalt",
    "Delta",
    "Evergreen",
    "Falcon",
    "Granite",
    "Harbor",
    "Ion",
    "Juniper",
    "Keystone",
    "Lumen",
    "Meridian",
    "Nimbus",
    "Orion",
    "Pinnacle",
    "Quartz",
    "Redwood",
    "Summit",
    "Titan",
]
TRADES = [
    "Bank",
    "Energy",
    "Pharma",
    "Motors",
    "Foods",
    "Systems",
    "Mining",
    "Airlines",
    "Retail",
    "Networks",
    "Capital",
    "Robotics",
    "Biotech",
    "Semiconductor",
    "Insurance",
    "Logistics",
    "Media",
    "Steel",
    "Games",
    "Solar",
]
SUFFIXES = ["", " Inc", " Corp", " Holdings", " Group", " Ltd"]
EVENTS = [
    "Shares Rise {p}% After Earnings Beat",
    "Falls {p}% As Guidance Disappoints",
    "Announces ${m}M Buyback",
    "Upgraded To Buy At Firm {n}",
    "To Acquire Rival For ${m}M",
    "Cuts {n} Jobs In Restructuring",
    "Q{q} Revenue Up {p}% Year Over Year",
    "Unusual Options Activity Seen In {n} Contracts",
]
NO_COMPANY = [
    "Stocks Rally As Treasury Yields Fall {p} Basis Points",
    "Oil Climbs {p}% On Supply Worries",
    "Markets Mixed Ahead Of Jobs Report Number {n}",
    "Gold Slips {p}% As Dollar Firms",
]
WRAPPER = (
    "import json, resource, subprocess, sys, time; t = time.perf_counter(); "
    "rc = subprocess.run(sys.argv[2:]).returncode; "
    "open(sys.argv[1], 'w').write(json.dumps({'rc': rc, 's': time.perf_counter() - t, "
    "'maxrss_kb': resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}))"
)


def headlines_csv(path: Path, n: int, seed: int = 0) -> None:
    """n distinct headlines, dated uniformly over 2010-2020, in a user's own CSV (text, date)."""
    rng = random.Random(seed)
    companies = [f"{a} {b}" for a in ROOTS for b in TRADES]  # 400 companies, each written several ways
    start, days = dt.date(2010, 1, 1), (dt.date(2020, 12, 31) - dt.date(2010, 1, 1)).days
    texts, dates = [], []
    for i in range(n):
        fill = {"p": rng.randint(1, 30), "m": rng.randint(5, 900), "n": i, "q": rng.randint(1, 4)}
        if rng.random() < 0.15:
            texts.append(rng.choice(NO_COMPANY).format(**fill))
        else:
            texts.append(f"{rng.choice(companies)}{rng.choice(SUFFIXES)} {rng.choice(EVENTS).format(**fill)}")
        dates.append(start + dt.timedelta(days=rng.randint(0, days)))
    path.parent.mkdir(parents=True, exist_ok=True)
    pl.DataFrame({"text": texts, "date": dates}).write_csv(path)


SUFFIX_WORDS = {suffix.strip() for suffix in SUFFIXES if suffix}


def answer_for(headline: str) -> str:
    """The server's teacher: the company the headline starts with (root, trade and any suffix), if any."""
    words = headline.split()
    if words[0] not in ROOTS:
        return json.dumps({"companies": []})
    mention = " ".join(words[:3] if words[2] in SUFFIX_WORDS else words[:2])
    return json.dumps({"companies": [{"mention": mention, "name": mention}]})


def serve(port: int, latency_s: float, capacity: int) -> None:
    state = {"in_flight": 0, "busy_s": 0.0, "busy_since": 0.0, "requests": 0, "rejected": 0}

    async def chat(request: web.Request) -> web.Response:
        body = await request.json()
        if state["in_flight"] >= capacity:
            state["rejected"] += 1
            return web.Response(status=429, text="full", headers={"Retry-After": "1"})
        if state["in_flight"] == 0:
            state["busy_since"] = time.perf_counter()
        state["in_flight"] += 1
        try:
            await asyncio.sleep(latency_s)
            state["requests"] += 1
            content = answer_for(body["messages"][-1]["content"])
        finally:
            state["in_flight"] -= 1
            if state["in_flight"] == 0:
                state["busy_s"] += time.perf_counter() - state["busy_since"]
        return web.json_response(
            {
                "id": "b",
                "object": "chat.completion",
                "model": MODEL,
                "choices": [
                    {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": content}}
                ],
                "usage": {"prompt_tokens": 350, "completion_tokens": 20, "total_tokens": 370},
            }
        )

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_get("/v1/models", lambda request: web.json_response({"object": "list", "data": [{"id": MODEL}]}))
    app.router.add_get("/stats", lambda request: web.json_response(state))
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


def server_stats(url: str) -> dict:
    with urllib.request.urlopen(url + "/stats", timeout=10) as response:
        return json.loads(response.read())


def run(repo: Path, *command: str, env: dict) -> None:
    subprocess.run(command, cwd=repo, env=env, check=True, capture_output=True, text=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--headlines", type=int, default=900_000)
    parser.add_argument("--sample-size", type=int, default=2714)
    parser.add_argument("--latency-ms", type=float, default=20)
    parser.add_argument("--capacity", type=int, default=128)
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        return serve(args.serve, args.latency_ms / 1000, args.capacity)

    env = dict(
        os.environ,
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        HF_HUB_OFFLINE="1",
        TOKENIZERS_PARALLELISM="false",
    )
    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "benchmarks.case_study_scale",
            "--serve",
            str(port),
            "--latency-ms",
            str(args.latency_ms),
            "--capacity",
            str(args.capacity),
        ],
        cwd=ROOT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(url, server, 30)
        with tempfile.TemporaryDirectory() as scratch:
            repo = copy_worktree(Path(scratch) / "repo")
            headlines_csv(repo / "data/bench/headlines.csv", args.headlines)
            sets = {
                "fetch.kind": "file",
                "fetch.source": "bench",
                "fetch.path": "data/bench/headlines.csv",
                "fetch.columns": "{text: text, date: date}",
                "fetch.keep_columns": "[]",
                "fetch.filters": "[]",
                "llm_label.endpoint.base_url": url,
                "llm_label.endpoint.token_env": "null",
                "cluster_sample.sample_size": str(args.sample_size),
            }
            run(
                repo,
                sys.executable,
                "-m",
                "scripts.apply_profile",
                "case_study",
                *(f"--set={key}={value}" for key, value in sets.items()),
                env=env,
            )
            for command in (
                ["git", "init", "-q"],
                ["git", "add", "-A"],
                ["git", "-c", "user.name=b", "-c", "user.email=b@b", "commit", "-qm", "bench"],
            ):
                run(repo, *command, env=env)
            stage_s, peak_mb = {}, {}
            started = time.perf_counter()
            for stage in STAGES:
                if stage == "llm_label":  # what `make plan` says the run costs, before anything is asked
                    plan = json.loads(
                        subprocess.run(
                            [sys.executable, "-m", "stages.llm_label", "--plan"],
                            cwd=repo,
                            env=env,
                            check=True,
                            capture_output=True,
                            text=True,
                        ).stdout
                    )
                before = server_stats(url)["busy_s"]
                report = Path(scratch) / f"{stage}.json"
                with open(Path(scratch) / f"{stage}.log", "w") as log:
                    subprocess.run(
                        [sys.executable, "-c", WRAPPER, str(report), "dvc", "repro", "--single-item", stage],
                        cwd=repo,
                        env=env,
                        check=True,
                        stdout=log,
                        stderr=log,
                    )
                measured = json.loads(report.read_text())
                if measured["rc"]:
                    tail = (Path(scratch) / f"{stage}.log").read_text()[-3000:]
                    raise SystemExit(f"dvc repro {stage} failed (rc {measured['rc']}):\n{tail}")
                stage_s[stage], peak_mb[stage] = round(measured["s"], 1), round(measured["maxrss_kb"] / 1024)
                if stage == "llm_label":
                    busy_s = server_stats(url)["busy_s"] - before
            wall_s = time.perf_counter() - started
            sampled = pl.read_parquet(repo / "data/sampled/sample.parquet").height
            labels = json.loads((repo / "metrics/llm_label.json").read_text())
            labels |= json.loads((repo / "metrics/speed/llm_label.json").read_text())  # concurrency, latencies
        stats = server_stats(url)
    finally:
        server.terminate()
        server.wait()
    print(
        json.dumps(
            {
                "headlines": args.headlines,
                "sampled": sampled,
                "sample_target": args.sample_size,
                "sampled_off_target": round(abs(sampled - args.sample_size) / args.sample_size, 4),
                "peak_rss_mb": max(peak_mb.values()),
                "peak_rss_mb_by_stage": peak_mb,
                "wall_s": round(wall_s, 1),
                "stage_s": stage_s,
                "client_share_of_wall": round(1 - busy_s / stage_s["llm_label"], 3),
                "llm_label_answers_per_s": round(labels["answers"] / stage_s["llm_label"], 1),
                "labelled": labels["headlines"],
                "valid": labels["valid"],
                "server": {
                    "latency_ms": args.latency_ms,
                    "capacity": args.capacity,
                    "answered": stats["requests"],
                    "rejected_429": stats["rejected"],
                    "busy_s": round(stats["busy_s"], 1),
                },
                "concurrency": labels["concurrency"],
                "plan": plan,
            }
        )
    )


if __name__ == "__main__":
    main()
