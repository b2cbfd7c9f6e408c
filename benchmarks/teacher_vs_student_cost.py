"""The teacher against its students on the same held-out headlines and this machine: headlines/s, USD per million
headlines at params' prices, and F1 against the human-labelled test split. Prints one JSON line.

Headlines: the human-labelled test headlines (--test, the demo's data/reviewed/test.parquet; or --test-jsonl, a
JSONL of {"text", "spans"}), then fetched headlines no stage labelled (--headlines) up to --n. Every model labels
the same --n headlines; F1 (stages.core.metrics) is on the human-labelled ones.

- teacher: params' llm_label endpoint (the bundled llama.cpp teacher for `local`, or --teacher-url), asked afresh
  (an empty answer cache) through the stage's own client, priced as llm_label prices it (llm_label.cost, from each
  answer's latency and the concurrency it was asked at).
- each student (--students), fp32 (the saved model) and export (int8 ONNX), in-process (predict at --batch-size)
  and served over HTTP by `python -m scripts.serve` (requests of --batch-size headlines, --clients at a time), priced at
  evaluate.cpu_usd_per_hour. `times_cheaper` is the teacher's USD per million over each student's.

Models: --models DIR (DIR/<student>, DIR/<student>_export), else dvc.yaml's paths (run `make demo` first).
--tiny is the smallest run, for the test suite (a teacher URL is then required: tests pass their fake teacher).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

from stages.core.io import read_table
from stages.core.metrics import entity_scores, usd_per_million
from stages.core.params import load_params
from stages.core.paths import dvc_paths
from stages.core.stage_params import EvaluateParams, LlmLabelParams
from stages.http.answer_cache import AnswerCache
from stages.http.client import ClientSettings
from stages.labels.records import LABEL_COLUMNS, human_records, labelled_records
from stages.llm_label import LOCAL, request_specs
from stages.students.registry import STUDENTS
from stages.teacher.endpoint import ask_all
from stages.teacher.labels import consensus_row
from stages.teacher.local_server import free_port, gguf_path, gguf_sha256, local_teacher
from stages.teacher.usage import estimate_cost, usage_totals

ROOT = Path(__file__).resolve().parents[1]

TINY = {"n": 16, "batch_size": 8}


def held_out(args) -> tuple[list[str], list[dict]]:
    """The --n headlines everyone labels, and the human-labelled test records among them (first)."""
    if args.test_jsonl:
        test = [json.loads(line) for line in args.test_jsonl.read_text().splitlines() if line.strip()]
    else:
        test = human_records(labelled_records(read_table(args.test, ["id", "text", *LABEL_COLUMNS])))
    test = test[: args.n]
    texts, seen = [r["text"] for r in test], {r["text"] for r in test}
    if len(texts) < args.n:
        labelled = set(read_table(args.labels, ["text"])["text"]) if args.labels.exists() else set()
        for text in read_table(args.headlines, ["id", "text"]).sort("id")["text"]:
            if len(texts) == args.n:
                break
            if text not in seen and text not in labelled:
                texts.append(text)
                seen.add(text)
    return texts, test


def teacher_run(texts: list[str], test: list[dict], url: str | None) -> dict:
    params = load_params(LlmLabelParams, ROOT / "params.yaml")
    local = url is None and params.endpoint.base_url == LOCAL
    specs = request_specs(params, gguf_sha256(gguf_path()) if local else None)
    with tempfile.TemporaryDirectory() as scratch, AnswerCache(scratch) as cache:
        server = local_teacher(params.endpoint.model, threads=params.local_threads) if local else None
        with server or contextlib.nullcontext(url or params.endpoint.base_url) as base_url:
            settings = ClientSettings(
                base_url=base_url,
                concurrency=params.concurrency,
                timeout_s=params.timeout_s,
                max_attempts=params.max_attempts,
                check_served_model=False,
            )
            started = time.perf_counter()
            asyncio.run(ask_all([(s, t) for s in specs for t in texts], cache, settings))
            wall_s = time.perf_counter() - started
        answers = [[cache.get(s.cache_key(t)) for s in specs] for t in texts]
        rows = [consensus_row(t, a, None if all(a) else "failed", params.occurrences) for t, a in zip(texts, answers)]
        totals = usage_totals(a for per_text in answers for a in per_text if a)
    price = estimate_cost(totals["prompt_tokens"], totals["completion_tokens"], totals["endpoint_s"], params.cost)
    predicted = [r.teacher_spans for r in rows[: len(test)]]
    return {
        "headlines_per_s": round(len(texts) / totals["endpoint_s"], 3) if totals["endpoint_s"] else None,
        "wall_headlines_per_s": round(len(texts) / wall_s, 3),
        "usd_per_million_headlines": round(price["usd"] / len(texts) * 1e6, 4),
        "f1": entity_scores([r["spans"] for r in test], predicted)["f1"],
        "model": params.endpoint.model,
    }


def in_process(student, directory: Path, texts: list[str], batch_size: int) -> tuple[float, list]:
    predict = student.load(directory)
    predict(texts[:batch_size], batch_size)  # warm-up
    started = time.perf_counter()
    predicted = predict(texts, batch_size)
    return len(texts) / (time.perf_counter() - started), predicted


def post(url: str, texts: list[str]) -> list:
    body = json.dumps({"inputs": texts, "parameters": {}}).encode()
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=300) as response:
        return json.loads(response.read())


def served(name: str, directory: Path, texts: list[str], batch_size: int, clients: int) -> tuple[float, list]:
    """Headlines/s through `python -m scripts.serve`: requests of batch_size headlines, `clients` of them in flight."""
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "scripts.serve",
        str(directory),
        "--port",
        str(port),
        "--max-batch",
        str(batch_size * clients),
        "--student",
        name,
    ]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 300
        while True:
            try:
                urllib.request.urlopen(url + "health", timeout=2).read()
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"scripts.serve {directory} did not come up") from None
                time.sleep(0.3)
        chunks = [texts[i : i + batch_size] for i in range(0, len(texts), batch_size)]
        post(url, chunks[0])  # warm-up
        with ThreadPoolExecutor(clients) as pool:
            started = time.perf_counter()
            answers = list(pool.map(lambda chunk: post(url, chunk), chunks))
            rate = len(texts) / (time.perf_counter() - started)
    finally:
        server.terminate()
        server.wait(timeout=30)
    entities = [e for answer in answers for e in answer]
    return rate, [[{"start": e["start"], "end": e["end"]} for e in found] for found in entities]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    paths = dvc_paths(ROOT)
    parser.add_argument("--n", type=int, default=256, help="headlines every model labels")
    parser.add_argument("--test", type=Path, default=paths["reviewed"] / "test.parquet")
    parser.add_argument("--test-jsonl", type=Path, help="human-labelled records instead of --test")
    parser.add_argument("--headlines", type=Path, default=paths["headlines"])
    parser.add_argument("--labels", type=Path, default=paths["labels"], help="headlines to leave out (labelled)")
    parser.add_argument("--models", type=Path, help="a directory holding <student> and <student>_export")
    parser.add_argument("--students", nargs="+", default=sorted(STUDENTS), choices=sorted(STUDENTS))
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--clients", type=int, default=2, help="requests in flight to the served student")
    parser.add_argument("--teacher-url", help="an OpenAI-compatible endpoint instead of params' llm_label endpoint")
    parser.add_argument("--tiny", action="store_true", help=f"the smallest run, for tests: {TINY}")
    parser.add_argument(
        "--out",
        type=Path,
        help="also write the JSON here (metrics/teacher_vs_student_cost.json is "
        "what the README's cost table is generated from)",
    )
    args = parser.parse_args()
    if args.tiny:
        vars(args).update(TINY)
    texts, test = held_out(args)
    gold = [r["spans"] for r in test]
    usd_per_hour = load_params(EvaluateParams, ROOT / "params.yaml").cpu_usd_per_hour
    models = {"teacher": teacher_run(texts, test, args.teacher_url)}
    for name in args.students:
        for form in ("", "_export"):
            directory = args.models / f"{name}{form}" if args.models else paths[f"{name}{form}"]
            for how, measure in (
                ("", partial(in_process, STUDENTS[name], directory, texts, args.batch_size)),
                ("_served", partial(served, name, directory, texts, args.batch_size, args.clients)),
            ):
                rate, predicted = measure()
                models[f"{name}{form}{how}"] = {
                    "headlines_per_s": round(rate, 1),
                    "usd_per_million_headlines": usd_per_million(rate, usd_per_hour),
                    "f1": entity_scores(gold, predicted[: len(test)])["f1"],
                }
    teacher_usd = models["teacher"]["usd_per_million_headlines"]
    for key, model in models.items():
        if key != "teacher":
            model["times_cheaper"] = float(f"{teacher_usd / model['usd_per_million_headlines']:.3g}")
    ratios = {
        f"{name}_export_served_over_in_process": round(
            models[f"{name}_export_served"]["headlines_per_s"] / models[f"{name}_export"]["headlines_per_s"], 3
        )
        for name in args.students
    }
    result = {
        "headlines": len(texts),
        "f1_headlines": len(test),
        "batch_size": args.batch_size,
        "clients": args.clients,
        "cpu_usd_per_hour": usd_per_hour,
        **ratios,
        "models": models,
    }
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
