"""Normal requests to `python -m scripts.serve` while --half-open connections try to hold it. Prints one JSON line.

Starts the server on a free port of 127.0.0.1 (nothing here ever leaves the loopback) and for --seconds runs
--half-open attackers, each connecting, sending a partial request line and holding the connection until the server
closes it, then connecting again after --reconnect-s; beside them, --rate normal requests a second (one headline,
a fresh connection each, so each must win a slot). Then it stops the server and reports: the normal requests
answered and failed (by status or error) with p50/p99 latency; the attackers' connections refused (a 503 or a reset
at once) and dropped (closed later: the read timeout, or a newcomer took the slot); the server's own /health counts;
and the lines the server logged while it ran.

    python -m benchmarks.serve_abuse [--model-dir models/gliner_export] [--half-open 2000] [--seconds 20] [--out FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from pathlib import Path

import aiohttp

from stages.teacher.local_server import free_port

ROOT = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"  # the only address this benchmark connects to
PARTIAL = b"POST / HTTP/1.1\r\nHo"
HEADLINES = [
    "Apple Shares Up 5% After Earnings Beat",
    "Tesla Recalls 2 Million Cars Over Autopilot",
    "Gold Prices Rise As Dollar Weakens",
    "Netflix Adds Subscribers, Stock Jumps",
]
SPARE_FILES = 1024  # this process's descriptors beside the attackers': normal requests, the server's log, Python


def start_server(model_dir: Path, port: int, options: list[str], log_file) -> subprocess.Popen:
    command = [sys.executable, "-m", "scripts.serve", str(model_dir), "--host", HOST, "--port", str(port), *options]
    server = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT, cwd=ROOT)
    deadline = time.monotonic() + 300
    while True:
        try:
            urllib.request.urlopen(f"http://{HOST}:{port}/health", timeout=2).read()
            return server
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                server.kill()
                log_file.seek(0)
                raise SystemExit(f"scripts.serve {model_dir} did not come up:\n{log_file.read()[-3000:]}") from None
            time.sleep(0.3)


async def attacker(port: int, deadline: float, reconnect_s: float, tally: Counter) -> None:
    """Hold half-open connections until the deadline, one at a time, counting how each one ended."""
    while (left := deadline - time.monotonic()) > 0:
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(HOST, port), left)
        except TimeoutError:
            return
        except OSError:
            tally["connect_failed"] += 1
            await asyncio.sleep(reconnect_s)
            continue
        tally["connections"] += 1
        try:
            writer.write(PARTIAL)
            first = await asyncio.wait_for(reader.read(64), deadline - time.monotonic())
            tally["refused" if first.startswith(b"HTTP/1.1 503") else "dropped"] += 1
        except ConnectionError:  # the server closed it with our partial line unread: a refusal
            tally["refused"] += 1
        except TimeoutError:
            tally["held_to_end"] += 1
        finally:
            writer.close()
        await asyncio.sleep(reconnect_s)


async def normal_request(session: aiohttp.ClientSession, url: str, text: str, latencies: list, failures: Counter):
    started = time.monotonic()
    try:
        async with session.post(url, json={"inputs": [text]}) as response:
            await response.read()
            if response.status != 200:
                failures[str(response.status)] += 1
                return
    except (aiohttp.ClientError, TimeoutError) as error:
        failures[type(error).__name__] += 1
        return
    latencies.append(time.monotonic() - started)


async def normal_traffic(port: int, deadline: float, rate: float) -> dict:
    """--rate requests a second until the deadline, then what became of them."""
    latencies: list[float] = []
    failures: Counter[str] = Counter()
    connector = aiohttp.TCPConnector(force_close=True, limit=0)
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        requests: list[asyncio.Task] = []
        while time.monotonic() < deadline:
            text = HEADLINES[len(requests) % len(HEADLINES)]
            requests.append(
                asyncio.create_task(normal_request(session, f"http://{HOST}:{port}/", text, latencies, failures))
            )
            await asyncio.sleep(1 / rate)
        await asyncio.gather(*requests)
    latencies.sort()
    return {
        "sent": len(requests),
        "answered": len(latencies),
        "failed": sum(failures.values()),
        "failures": dict(failures),
        "p50_ms": round(1000 * latencies[len(latencies) // 2], 1) if latencies else None,
        "p99_ms": round(1000 * latencies[int(0.99 * (len(latencies) - 1))], 1) if latencies else None,
    }


async def abuse(port: int, half_open: int, seconds: float, rate: float, reconnect_s: float) -> dict:
    """Attackers on this event loop, normal traffic on its own in a thread: a normal client is not one of the
    attackers' tasks, so thousands of them do not delay its request (and get it evicted) on the client side."""
    deadline = time.monotonic() + seconds
    tally: Counter[str] = Counter()
    attackers = [asyncio.create_task(attacker(port, deadline, reconnect_s, tally)) for _ in range(half_open)]
    normal = await asyncio.to_thread(asyncio.run, normal_traffic(port, deadline, rate))
    await asyncio.gather(*attackers)
    return {"normal": normal, "half_open": dict(tally)}


def allow_files(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= needed:
        return
    if hard != resource.RLIM_INFINITY and hard < needed:
        raise SystemExit(f"--half-open needs {needed} open files; this process may open {hard} (ulimit -n)")
    resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, default=ROOT / "models/gliner_export")
    parser.add_argument("--half-open", type=int, default=2000, help="attackers, each holding one connection")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--rate", type=float, default=10.0, help="normal requests a second")
    parser.add_argument("--reconnect-s", type=float, default=1.0, help="an attacker's pause before reconnecting")
    parser.add_argument("--max-connections", type=int, help="the server's (default: its own default)")
    parser.add_argument("--read-timeout-s", type=float, help="the server's (default: its own default)")
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    args = parser.parse_args()
    if not 1 <= args.half_open <= 20_000 or not 0 < args.seconds <= 600 or not 0 < args.rate <= 1000:
        parser.error("--half-open from 1 to 20000, --seconds over 0 and at most 600, --rate over 0 and at most 1000")
    allow_files(args.half_open + SPARE_FILES)
    options = [
        f"--{name.replace('_', '-')}={value}"
        for name, value in (("max_connections", args.max_connections), ("read_timeout_s", args.read_timeout_s))
        if value is not None
    ]
    port = free_port()
    with tempfile.TemporaryFile("w+") as log_file:
        server = start_server(args.model_dir, port, options, log_file)
        try:
            log_file.seek(0, 2)
            started_at = log_file.tell()  # the startup lines are not the run's
            result = asyncio.run(abuse(port, args.half_open, args.seconds, args.rate, args.reconnect_s))
            with urllib.request.urlopen(f"http://{HOST}:{port}/health", timeout=10) as response:
                health = json.loads(response.read())
        finally:
            server.terminate()
            server.wait(timeout=30)
        log_file.seek(started_at)
        lines = log_file.read().splitlines()
    out = {
        "half_open_attackers": args.half_open,
        "seconds": args.seconds,
        "rate": args.rate,
        **result,
        "server": {key: health[key] for key in ("connections", "requests", "rejected", "failed", "batches")},
        "server_log_lines": len(lines),
        "server_log": lines[:20],
    }
    if args.out:
        args.out.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
