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
import math
import os
import sys
import urllib.parse
from collections import Counter
from pathlib import Path

import polars as pl
import pyarrow as pa
from tqdm import tqdm

from stages.common.io import log, read_table, setup_logging, write_csv, write_json, write_table
from stages.common.local_teacher import gguf_path, gguf_sha256, local_teacher
from stages.common.params import load_params
from stages.common.schema import HEADLINE_COLUMNS, SPANS, seeded_rank
from stages.common.spans import align
from stages.common.teacher import (RETRYABLE_KINDS, AnswerCache, ClientSettings, Extractive,
                                   Prompt, RequestSpec, ask_all, parse_answer)

LOCAL = "local"  # endpoint.base_url value that starts the bundled llama.cpp teacher
LOOPBACK = {"localhost", "127.0.0.1", "::1"}


def select_headlines(headlines: pl.DataFrame, limit: int | None, seed: int) -> pl.DataFrame:
    """A seeded subset spread over all dates; adding headlines to the source keeps earlier picks mostly stable."""
    if not limit or limit >= headlines.height:
        return headlines
    rank = headlines["id"].map_elements(lambda i: seeded_rank(seed, i), return_dtype=pl.String)
    return headlines.with_columns(rank=rank).sort("rank").head(limit).drop("rank")


def request_specs(params: dict, model_file_sha256: str | None = None) -> list[RequestSpec]:
    """One spec per self-consistency sample (just one when self-consistency is off)."""
    endpoint = params["endpoint"]
    generation = dict(params["generation"])
    consistency = params["self_consistency"]
    samples = consistency["samples"]
    if samples > 1:
        generation["temperature"] = consistency["temperature"]
    extractive = dict(params["extractive"])
    spec = RequestSpec(model=endpoint["model"], prompt=Prompt.load(params["prompt_file"]),
                       response_format=endpoint["response_format"], generation=generation,
                       extractive=Extractive(**extractive) if extractive.pop("enabled") else None,
                       model_file_sha256=model_file_sha256)
    return [spec.for_sample(i) for i in range(samples)]


def failed_row(failure: str | None) -> dict:
    return {"valid": False, "error": f"request_failed: {failure or 'not asked'}", "raw_answer": None,
            "finish_reason": None, "result": [], "normalized_result": [], "spans": [], "hallucinated": [],
            "length_mismatch": False, "agreement": None}


def label_row(text: str, answer: dict | None, failure: str | None, occurrences: str) -> dict:
    """One output row from a cached answer (or the failure that prevented one)."""
    if answer is None:
        return failed_row(failure)
    parsed = parse_answer(answer["content"])
    spans, hallucinated = align(text, parsed["result"], occurrences)
    return {**parsed, "raw_answer": answer["content"], "finish_reason": answer.get("finish_reason"),
            "spans": spans, "hallucinated": hallucinated, "agreement": None,
            "length_mismatch": parsed["valid"] and len(parsed["result"]) != len(parsed["normalized_result"])}


def consensus_row(text: str, answers: list[dict | None], failure: str | None, occurrences: str) -> dict:
    """Self-consistency: keep the spans that more than half of the samples agree on."""
    if len(answers) == 1:
        return label_row(text, answers[0], failure, occurrences)
    if any(a is None for a in answers):
        return failed_row(failure)
    rows = [label_row(text, a, None, occurrences) for a in answers]
    votes = Counter((s["start"], s["end"]) for r in rows for s in r["spans"])
    majority = {span for span, count in votes.items() if count > len(rows) / 2}
    pairs: dict[str, str] = {}
    for row in rows:
        names = row["normalized_result"] if not row["length_mismatch"] else row["result"]
        for mention, name in zip(row["result"], names):
            found, _ = align(text, [mention], occurrences)
            if mention not in pairs and any((s["start"], s["end"]) in majority for s in found):
                pairs[mention] = name
    agreeing = sum({(s["start"], s["end"]) for s in r["spans"]} == majority for r in rows)
    return {"valid": sum(r["valid"] for r in rows) > len(rows) / 2,
            "error": next((r["error"] for r in rows if r["error"]), None),
            "raw_answer": json.dumps([a["content"] for a in answers], ensure_ascii=False),
            "finish_reason": Counter(r["finish_reason"] for r in rows).most_common(1)[0][0],
            "result": list(pairs), "normalized_result": list(pairs.values()),
            "spans": [{"start": s, "end": e, "text": text[s:e]} for s, e in sorted(majority)],
            "hallucinated": sorted({h for r in rows for h in r["hallucinated"]}),
            "length_mismatch": any(r["length_mismatch"] for r in rows), "agreement": agreeing / len(rows)}


LABEL_SCHEMA = {"valid": pl.Boolean, "error": pl.String, "raw_answer": pl.String, "finish_reason": pl.String,
                "result": pl.List(pl.String), "normalized_result": pl.List(pl.String), "spans": SPANS,
                "hallucinated": pl.List(pl.String), "length_mismatch": pl.Boolean, "agreement": pl.Float64}
# Arrow builds nested columns from Python rows in C, several times faster than polars' row constructor.
LABEL_ARROW_SCHEMA = pl.DataFrame(schema=LABEL_SCHEMA).to_arrow().schema


def label_table(headlines: pl.DataFrame, specs: list[RequestSpec], cache: AnswerCache,
                failures: dict[str, str], occurrences: str) -> pl.DataFrame:
    rows = [consensus_row(text, [cache.get(s.cache_key(text)) for s in specs], failures.get(text), occurrences)
            for text in headlines["text"]]
    labels = pl.from_arrow(pa.Table.from_pylist(rows, schema=LABEL_ARROW_SCHEMA))
    return pl.concat([headlines, labels], how="horizontal")


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)], 3)


def usage_totals(answers: list[dict]) -> dict:
    """Tokens, retries, latencies and endpoint seconds of these answers. An answer occupied 1/concurrency of
    the endpoint for its latency, at the concurrency it was asked with (recorded with it), so these figures
    depend on the answers alone, never on today's params."""
    usage = [a.get("usage") or {} for a in answers]
    timed = [a for a in answers if a.get("latency_s") is not None]
    latencies = [a["latency_s"] for a in timed]
    return {"answers": len(answers), "prompt_tokens": sum(u.get("prompt_tokens", 0) for u in usage),
            "completion_tokens": sum(u.get("completion_tokens", 0) for u in usage),
            "retries": sum(a.get("attempts", 1) - 1 for a in answers),
            "latency_s": {"p50": percentile(latencies, 0.5), "p95": percentile(latencies, 0.95),
                          "p99": percentile(latencies, 0.99), "total": round(sum(latencies), 3)},
            "endpoint_s": sum(a["latency_s"] / a.get("concurrency", 1) for a in timed),
            "concurrency": concurrency_summary(timed)}


def concurrency_summary(answers: list[dict]) -> dict:
    """The limit the answers were asked under (recorded with each, so it is a fact of the cache, not of a run)."""
    limits = [a.get("concurrency", 1) for a in answers]
    if not limits:
        return {}
    return {"min": min(limits), "max": max(limits), "mean": round(sum(limits) / len(limits), 2)}


def concurrency_points(answers: list[dict], max_points: int = 1000) -> list[dict]:
    """Plot data: the limit each answer ran under, in the order the answers arrived (at most max_points)."""
    step = max(1, -(-len(answers) // max_points))
    return [{"answer": i, "concurrency": a.get("concurrency", 1)} for i, a in enumerate(answers) if i % step == 0]


def estimate_cost(prompt_tokens: float, completion_tokens: float, endpoint_s: float, cost: dict) -> dict:
    """Endpoint hours at the hourly price, or token prices if given."""
    hours = endpoint_s / 3600
    if cost.get("usd_per_million_prompt_tokens") is not None:
        usd = (prompt_tokens * cost["usd_per_million_prompt_tokens"]
               + completion_tokens * (cost.get("usd_per_million_completion_tokens") or 0)) / 1e6
    else:
        usd = hours * (cost.get("usd_per_hour") or 0.0)
    return {"endpoint_hours": round(hours, 4), "estimated_cost_usd": round(usd, 4), "usd": usd}


def label_metrics(labels: pl.DataFrame, answers: list[dict], cost: dict) -> dict:
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
        "length_mismatch": int(labels["length_mismatch"].sum()),
        "headlines_with_company": int((labels["spans"].list.len() > 0).sum()),
        "spans": int(labels["spans"].list.len().sum()),
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


def plan(todo: list, cached_answers: list[dict], params: dict) -> dict:
    """What a run would ask and roughly cost, from what cached answers say about this endpoint."""
    totals = usage_totals(cached_answers)
    n = max(1, totals["answers"])
    per_call = {"prompt_tokens": totals["prompt_tokens"] / n, "completion_tokens": totals["completion_tokens"] / n,
                "latency_s": totals["latency_s"]["total"] / n}
    if not cached_answers:  # nothing measured yet: a rough guess from prompt length
        prompt_chars = len(json.dumps(request_specs(params)[0].body("x" * 60)))
        per_call = {"prompt_tokens": prompt_chars / 4, "completion_tokens": 30,
                    "latency_s": 1 / params["expected_headlines_per_s"]}
    in_flight = totals["concurrency"].get("mean") or params["concurrency"]["start"]  # as the cache saw it, else start
    endpoint_s = per_call["latency_s"] * len(todo) / in_flight
    estimate = {"prompt_tokens": round(per_call["prompt_tokens"] * len(todo)),
                "completion_tokens": round(per_call["completion_tokens"] * len(todo))}
    price = estimate_cost(estimate["prompt_tokens"], estimate["completion_tokens"], endpoint_s, params["cost"])
    return {"requests_to_make": len(todo), "estimated_prompt_tokens": estimate["prompt_tokens"],
            "estimated_completion_tokens": estimate["completion_tokens"],
            "estimated_minutes": round(endpoint_s / 60, 1),
            "endpoint_hours": price["endpoint_hours"], "estimated_cost_usd": price["estimated_cost_usd"],
            "basis": f"mean of {len(cached_answers)} cached answers" if cached_answers else "rough guess"}


def endpoint_token(endpoint: dict, environ: dict) -> str | None:
    """The bearer token from the variable params name; a remote endpoint without it fails before any call."""
    token_env = endpoint.get("token_env")
    token = environ.get(token_env) if token_env else None
    local = endpoint["base_url"] == LOCAL or urllib.parse.urlparse(endpoint["base_url"]).hostname in LOOPBACK
    if token_env and not token and not local:
        raise SystemExit(f"llm_label: the environment variable {token_env} (llm_label.endpoint.token_env) is not set; "
                         f"export it with the token for {endpoint['base_url']}, or set token_env: null if the "
                         f"endpoint needs none")
    return token


def describe_failures(failures: dict[str, str], max_attempts: int) -> str:
    """'3 headline(s) failed: timeout x2 after 5 attempts each, http_400 x1 (not retryable)'."""
    kinds = Counter(failures.values())
    return f"{len(failures)} headline(s) failed: " + ", ".join(
        f"{kind} x{count} " + (f"after {max_attempts} attempts each" if kind in RETRYABLE_KINDS else "(not retryable)")
        for kind, count in sorted(kinds.items()))


def ask_missing(todo: list[tuple[RequestSpec, str]], cache: AnswerCache, params: dict, token: str | None
                ) -> dict[str, str]:
    """Ask the teacher for every missing answer; returns the error kind of each headline that still failed."""
    endpoint = params["endpoint"]
    base_url = endpoint["base_url"]
    server = local_teacher(endpoint["model"], threads=params["local_threads"]) if base_url == LOCAL \
        else contextlib.nullcontext(base_url)
    with server as url, tqdm(total=len(todo), desc="llm_label", unit="request") as progress:
        settings = ClientSettings(base_url=url, token=token, concurrency=params["concurrency"],
                                  timeout_s=params["timeout_s"], max_attempts=params["max_attempts"])
        try:
            stats, failures = asyncio.run(ask_all(todo, cache, settings, progress.update))
        finally:
            cache.close()
    log.info("llm_label: %d calls (%d retries), p50 latency %s s, failures %s; requests in flight %s",
             stats.calls, stats.retries, percentile(stats.latencies_s, 0.5), stats.failures or "none",
             stats.limit_summary)
    return failures


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name in ("headlines", "cache-dir", "out", "metrics", "concurrency-plot"):
        parser.add_argument(f"--{name}", type=Path, required=True)
    parser.add_argument("--plan", action="store_true", help="print what a run would ask and cost; call nothing")
    args = parser.parse_args(argv)
    setup_logging()
    params = load_params("llm_label")
    local = params["endpoint"]["base_url"] == LOCAL
    specs = request_specs(params, gguf_sha256(gguf_path()) if local else None)
    headlines = select_headlines(read_table(args.headlines, list(HEADLINE_COLUMNS)), params["limit"],
                                 params["sample_seed"])
    cache = AnswerCache(args.cache_dir)
    texts = sorted(set(headlines["text"]))
    todo = [(spec, text) for spec in specs for text in texts if spec.cache_key(text) not in cache]
    log.info("llm_label: %d headlines x %d sample(s): %d answers cached, %d to ask %s at %s", headlines.height,
             len(specs), len(specs) * len(texts) - len(todo), len(todo), specs[0].model,
             params["endpoint"]["base_url"])
    if args.plan:
        print(json.dumps(plan(todo, list(cache.answers.values()), params), indent=2))
        return
    failures = ask_missing(todo, cache, params, endpoint_token(params["endpoint"], os.environ)) if todo else {}
    labels = label_table(headlines, specs, cache, failures, params["occurrences"])
    used_keys = {spec.cache_key(t) for spec in specs for t in texts}
    used = [a for key, a in cache.answers.items() if key in used_keys]  # in the order they arrived
    metrics = label_metrics(labels, used, params["cost"])
    write_table(labels, args.out)
    write_json(args.metrics, metrics)
    write_csv(args.concurrency_plot, concurrency_points(used), ["answer", "concurrency"])
    log.info("llm_label: %d valid, %d invalid, %d failed, %d spans, %d hallucinated mentions, ~$%.4f -> %s",
             metrics["valid"], metrics["invalid_answers"], metrics["failed_requests"], metrics["spans"],
             metrics["hallucinated_mentions"], metrics["estimated_cost_usd"], args.out)
    if failures and params["fail_on_request_errors"]:
        sys.exit(f"llm_label: {describe_failures(failures, params['max_attempts'])}; every answer received "
                 f"is cached, so `dvc repro` again asks only for these. To carry on with them flagged valid=false "
                 f"instead, set llm_label.fail_on_request_errors: false.")


if __name__ == "__main__":
    main()
