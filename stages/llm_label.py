"""llm_label: ask the teacher LLM for the companies in every headline, align its answers to spans.

Reads data/fetched/headlines.parquet and the prompt file; keeps every answer in the persistent cache
data/llm_cache/ (a rerun asks only what it has not asked with the same prompt and params); writes
data/labels/llm_labels.parquet and metrics/llm_label.json.

`python -m stages.llm_label --plan` prints what a run would ask and cost, without calling anything.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import urllib.parse
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pyarrow as pa
from tqdm import tqdm

from stages.common.answer_cache import AnswerCache, CacheWriteError
from stages.common.io import log, read_table, setup_logging, write_csv, write_json, write_table
from stages.common.local_teacher import gguf_path, gguf_sha256, local_teacher
from stages.common.params import load_params
from stages.common.paths import dvc_paths
from stages.common.schema import HEADLINE_COLUMNS, SPANS, seeded_rank
from stages.common.spans import as_spans, locate, longest_first
from stages.common.stage_params import Cost, Endpoint, LlmLabelParams
from stages.common.teacher_client import RETRYABLE_KINDS, ClientSettings, ask_all
from stages.common.teacher_request import Extractive, Prompt, RequestSpec, parse_answer
from stages.common.teacher_usage import concurrency_points, estimate_cost, percentile, usage_totals

LOCAL = "local"  # endpoint.base_url value that starts the bundled llama.cpp teacher
LOOPBACK = {"localhost", "127.0.0.1", "::1"}


def select_headlines(headlines: pl.DataFrame, limit: int | None, seed: int) -> pl.DataFrame:
    """A seeded subset spread over all dates; adding headlines to the source keeps earlier picks mostly stable."""
    if not limit or limit >= headlines.height:
        return headlines
    rank = headlines["id"].map_elements(lambda i: seeded_rank(seed, i), return_dtype=pl.String)
    return headlines.with_columns(rank=rank).sort("rank").head(limit).drop("rank")


def request_specs(params: LlmLabelParams, model_file_sha256: str | None = None) -> list[RequestSpec]:
    """One spec per self-consistency sample (just one when self-consistency is off)."""
    generation = params.generation.model_dump()
    samples = params.self_consistency.samples
    if samples > 1:
        generation["temperature"] = params.self_consistency.temperature
    extractive = Extractive(**params.extractive.model_dump(exclude={"enabled"})) if params.extractive.enabled else None
    spec = RequestSpec(model=params.endpoint.model, prompt=Prompt.load(params.prompt_file),
                       response_format=params.endpoint.response_format, generation=generation,
                       extractive=extractive, model_file_sha256=model_file_sha256)
    return [spec.for_sample(i) for i in range(samples)]


@dataclass(frozen=True)
class Reading:
    """One answer parsed and aligned, once: its label row and its self-consistency vote both read it."""
    parsed: dict                              # parse_answer: valid, error, mentions, names
    found: dict[str, list[tuple[int, int]]]   # where each mention occurs (nowhere: hallucinated)
    offsets: list[tuple[int, int]]            # the answer's spans, overlaps resolved

    @property
    def hallucinated(self) -> list[str]:
        return [m for m in self.parsed["mentions"] if not self.found[m]]


def read_answer(text: str, answer: dict, occurrences: str) -> Reading:
    parsed = parse_answer(answer["content"], answer.get("error"))
    found = locate(text, parsed["mentions"], occurrences)
    return Reading(parsed, found, longest_first(o for hits in found.values() for o in hits))


def failed_row(failure: str | None) -> dict:
    return {"valid": False, "error": f"request_failed: {failure or 'not asked'}", "raw_answer": None,
            "finish_reason": None, "mentions": [], "names": [], "teacher_spans": [], "hallucinated": [],
            "agreement": None}


def label_row(text: str, answer: dict | None, failure: str | None, occurrences: str) -> dict:
    """One output row from a cached answer (or the failure that prevented one). `mentions` and `names` are
    the pairs whose mention is in the headline; `hallucinated` the mentions that are not."""
    if answer is None:
        return failed_row(failure)
    reading = read_answer(text, answer, occurrences)
    pairs = [(m, n) for m, n in zip(reading.parsed["mentions"], reading.parsed["names"]) if reading.found[m]]
    return {"valid": reading.parsed["valid"], "error": reading.parsed["error"], "raw_answer": answer["content"],
            "finish_reason": answer.get("finish_reason"), "mentions": [m for m, _ in pairs],
            "names": [n for _, n in pairs], "teacher_spans": as_spans(text, reading.offsets),
            "hallucinated": reading.hallucinated, "agreement": None}


def consensus_row(text: str, answers: list[dict | None], failure: str | None, occurrences: str) -> dict:
    """Self-consistency: keep the spans that more than half of the samples agree on."""
    if len(answers) == 1:
        return label_row(text, answers[0], failure, occurrences)
    if any(a is None for a in answers):
        return failed_row(failure)
    readings = [read_answer(text, a, occurrences) for a in answers]
    votes = Counter(span for r in readings for span in r.offsets)
    majority = {span for span, count in votes.items() if count > len(readings) / 2}
    pairs: dict[str, str] = {}
    for r in readings:
        for mention, name in zip(r.parsed["mentions"], r.parsed["names"]):
            if mention not in pairs and any(span in majority for span in longest_first(r.found[mention])):
                pairs[mention] = name
    agreeing = sum(set(r.offsets) == majority for r in readings)
    return {"valid": sum(r.parsed["valid"] for r in readings) > len(readings) / 2,
            "error": next((r.parsed["error"] for r in readings if r.parsed["error"]), None),
            "raw_answer": json.dumps([a["content"] for a in answers], ensure_ascii=False),
            "finish_reason": Counter(a.get("finish_reason") for a in answers).most_common(1)[0][0],
            "mentions": list(pairs), "names": list(pairs.values()), "teacher_spans": as_spans(text, sorted(majority)),
            "hallucinated": sorted({m for r in readings for m in r.hallucinated}),
            "agreement": agreeing / len(readings)}


LABEL_SCHEMA = {"valid": pl.Boolean, "error": pl.String, "raw_answer": pl.String, "finish_reason": pl.String,
                "mentions": pl.List(pl.String), "names": pl.List(pl.String), "teacher_spans": SPANS,
                "hallucinated": pl.List(pl.String), "agreement": pl.Float64}
# Arrow builds nested columns from Python rows in C, several times faster than polars' row constructor.
LABEL_ARROW_SCHEMA = pl.DataFrame(schema=LABEL_SCHEMA).to_arrow().schema


def label_table(headlines: pl.DataFrame, specs: list[RequestSpec], cache: AnswerCache,
                failures: dict[str, str], occurrences: str) -> pl.DataFrame:
    rows = [consensus_row(text, [cache.get(s.cache_key(text)) for s in specs], failures.get(text), occurrences)
            for text in headlines["text"]]
    labels = pl.from_arrow(pa.Table.from_pylist(rows, schema=LABEL_ARROW_SCHEMA))
    return pl.concat([headlines, labels], how="horizontal")


def label_metrics(labels: pl.DataFrame, answers: Iterable[dict], cost: Cost) -> dict:
    """Deterministic given the cache: every figure describes the labels, not this particular run."""
    finish = labels.filter(pl.col("finish_reason").is_not_null())["finish_reason"].value_counts(sort=True)
    errors = labels.filter(pl.col("error").is_not_null())["error"].str.extract(r"^(\w+)").value_counts(sort=True)
    totals = usage_totals(answers)
    metrics = {
        "headlines": labels.height,
        "valid": int(labels["valid"].sum()),
        "invalid_answers": int((~labels["valid"] & labels["raw_answer"].is_not_null()).sum()),
        "failed_requests": int(labels["raw_answer"].is_null().sum()),
        "errors_by_kind": {r["error"]: r["count"] for r in errors.iter_rows(named=True)},
        "headlines_with_company": int((labels["teacher_spans"].list.len() > 0).sum()),
        "spans": int(labels["teacher_spans"].list.len().sum()),
        "hallucinated_mentions": int(labels["hallucinated"].list.len().sum()),
        "finish_reason": {r["finish_reason"]: r["count"] for r in finish.iter_rows(named=True)}}
    endpoint_s = totals.pop("endpoint_s")
    price = estimate_cost(totals["prompt_tokens"], totals["completion_tokens"], endpoint_s, cost)
    # Per headline, not per answer: with self-consistency every headline costs `samples` answers.
    metrics |= {**totals, "endpoint_hours": price["endpoint_hours"], "estimated_cost_usd": price["estimated_cost_usd"],
                "headlines_per_s": round(labels.height / endpoint_s, 3) if endpoint_s else None,
                "usd_per_million_headlines": round(price["usd"] / max(1, labels.height) * 1e6, 4)}
    if labels["agreement"].is_not_null().any():
        metrics["self_consistency_agreement"] = round(float(labels["agreement"].mean()), 4)
    return metrics


def plan(requests: int, cached_answers: Iterable[dict], spec: RequestSpec, params: LlmLabelParams) -> dict:
    """What a run would ask and roughly cost, from what cached answers say about this endpoint."""
    totals = usage_totals(cached_answers)
    answered = totals["answers"]
    n = max(1, answered)
    per_call = {"prompt_tokens": totals["prompt_tokens"] / n, "completion_tokens": totals["completion_tokens"] / n,
                "latency_s": totals["latency_s"]["total"] / n}
    if not answered:  # nothing measured yet: a rough guess from prompt length
        prompt_chars = len(json.dumps(spec.body("x" * 60)))
        per_call = {"prompt_tokens": prompt_chars / 4, "completion_tokens": 30,
                    "latency_s": 1 / params.expected_headlines_per_s}
    in_flight = totals["concurrency"].get("mean") or params.concurrency.start  # as the cache saw it, else start
    endpoint_s = per_call["latency_s"] * requests / in_flight
    estimate = {"prompt_tokens": round(per_call["prompt_tokens"] * requests),
                "completion_tokens": round(per_call["completion_tokens"] * requests)}
    price = estimate_cost(estimate["prompt_tokens"], estimate["completion_tokens"], endpoint_s, params.cost)
    return {"requests_to_make": requests, "estimated_prompt_tokens": estimate["prompt_tokens"],
            "estimated_completion_tokens": estimate["completion_tokens"],
            "estimated_minutes": round(endpoint_s / 60, 1),
            "endpoint_hours": price["endpoint_hours"], "estimated_cost_usd": price["estimated_cost_usd"],
            "basis": f"mean of {answered} cached answers" if answered else "rough guess"}


def endpoint_token(endpoint: Endpoint, environ: dict) -> str | None:
    """The bearer token from the variable params name; a remote endpoint without it fails before any call."""
    token = environ.get(endpoint.token_env) if endpoint.token_env else None
    local = endpoint.base_url == LOCAL or urllib.parse.urlparse(endpoint.base_url).hostname in LOOPBACK
    if endpoint.token_env and not token and not local:
        raise SystemExit(f"llm_label: the environment variable {endpoint.token_env} (llm_label.endpoint.token_env) "
                         f"is not set; export it with the token for {endpoint.base_url}, or set token_env: null if "
                         f"the endpoint needs none")
    return token


def describe_failures(failures: dict[str, str], max_attempts: int) -> str:
    """'3 headline(s) failed: timeout x2 after 5 attempts each, http_400 x1 (not retryable)'."""
    kinds = Counter(failures.values())
    return f"{len(failures)} headline(s) failed: " + ", ".join(
        f"{kind} x{count} " + (f"after {max_attempts} attempts each" if kind in RETRYABLE_KINDS else "(not retryable)")
        for kind, count in sorted(kinds.items()))


def missing_answers(specs: list[RequestSpec], texts: list[str],
                    cache: AnswerCache) -> tuple[list[tuple[RequestSpec, str]], dict[str, str]]:
    """The (spec, headline) pairs with no cached answer, and {legacy key: key} of the answers found only under
    the key formula of older runs (to re-file under today's key, so changing a param no request carries
    never misses them)."""
    todo, legacy = [], {}
    for spec in specs:
        for text in texts:
            key = spec.cache_key(text)
            if key in cache:
                continue
            old = spec.legacy_cache_key(text)
            if old in cache:
                legacy[old] = key
            else:
                todo.append((spec, text))
    return todo, legacy


def ask_missing(todo: list[tuple[RequestSpec, str]], cache: AnswerCache, params: LlmLabelParams,
                token: str | None) -> dict[str, str]:
    """Ask the teacher for every missing answer; returns the error kind of each headline that still failed."""
    base_url = params.endpoint.base_url
    server = local_teacher(params.endpoint.model, threads=params.local_threads) if base_url == LOCAL \
        else contextlib.nullcontext(base_url)
    with server as url, tqdm(total=len(todo), desc="llm_label", unit="request") as progress:
        settings = ClientSettings(base_url=url, token=token, concurrency=params.concurrency,
                                  timeout_s=params.timeout_s, max_attempts=params.max_attempts)
        stats, failures = asyncio.run(ask_all(todo, cache, settings, progress.update))
    log.info("llm_label: %d calls (%d retries), p50 latency %s s, failures %s; requests in flight %s",
             stats.calls, stats.retries, percentile(stats.latencies_s, 0.5), stats.failures or "none",
             stats.limit_summary)
    return failures


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name in ("headlines", "cache-dir", "out", "metrics", "concurrency-plot"):
        parser.add_argument(f"--{name}", type=Path)
    parser.add_argument("--plan", action="store_true", help="print what a run would ask and cost; call nothing "
                        "(headlines and cache default to dvc.yaml's paths)")
    args = parser.parse_args(argv)
    if args.plan and not (args.headlines and args.cache_dir):
        named = dvc_paths(Path.cwd())
        args.headlines, args.cache_dir = args.headlines or named["headlines"], args.cache_dir or named["llm_cache"]
    missing = [f"--{name.replace('_', '-')}" for name, value in vars(args).items() if value is None and not args.plan]
    if missing:
        parser.error(f"{', '.join(missing)} required (dvc.yaml's llm_label command gives them all; --plan needs none)")
    setup_logging()
    params: LlmLabelParams = load_params(LlmLabelParams)
    local = params.endpoint.base_url == LOCAL
    specs = request_specs(params, gguf_sha256(gguf_path()) if local else None)
    headlines = select_headlines(read_table(args.headlines, list(HEADLINE_COLUMNS)), params.limit, params.sample_seed)
    texts = sorted(set(headlines["text"]))
    try:
        with AnswerCache(args.cache_dir) as cache:
            if cache.skipped:
                log.warning("llm_label: skipped %d unreadable line(s) of the answer cache (the first: %s); their "
                            "answers are asked again", cache.skipped, cache.first_skipped)
            todo, legacy = missing_answers(specs, texts, cache)
            log.info("llm_label: %d headlines x %d sample(s): %d answers cached (%d under an older key), %d to ask "
                     "%s at %s", headlines.height, len(specs), len(specs) * len(texts) - len(todo), len(legacy),
                     len(todo), specs[0].model, params.endpoint.base_url)
            if args.plan:
                print(json.dumps(plan(len(todo), cache.answers(), specs[0], params), indent=2))
                return
            cache.refile(legacy)
            failures = ask_missing(todo, cache, params, endpoint_token(params.endpoint, os.environ)) if todo else {}
            labels = label_table(headlines, specs, cache, failures, params.occurrences)
            used = {spec.cache_key(t) for spec in specs for t in texts}
            metrics = label_metrics(labels, cache.answers(used), params.cost) | {"cache_lines_skipped": cache.skipped}
            points = concurrency_points(cache.answers(used), metrics["answers"])
    except CacheWriteError as error:  # a full disk: one line; the answers in flight were cached first
        sys.exit(f"llm_label: cannot write the answer cache: {error}; every answer received before it is cached, "
                 f"so once that is fixed `dvc repro` asks only for the rest")
    write_table(labels, args.out)
    write_json(args.metrics, metrics)
    write_csv(args.concurrency_plot, points, ["answer", "concurrency"])
    log.info("llm_label: %d valid, %d invalid, %d failed, %d spans, %d hallucinated mentions, ~$%.4f -> %s",
             metrics["valid"], metrics["invalid_answers"], metrics["failed_requests"], metrics["spans"],
             metrics["hallucinated_mentions"], metrics["estimated_cost_usd"], args.out)
    if failures and params.fail_on_request_errors:
        sys.exit(f"llm_label: {describe_failures(failures, params.max_attempts)}; every answer received "
                 f"is cached, so `dvc repro` again asks only for these. To carry on with them flagged valid=false "
                 f"instead, set llm_label.fail_on_request_errors: false.")


if __name__ == "__main__":
    main()
