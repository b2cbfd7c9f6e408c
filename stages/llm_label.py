"""llm_label: ask the teacher LLM for the companies in every headline, align its answers to spans.

Reads data/fetched/headlines.parquet and the prompt file; keeps every answer in the persistent cache
data/llm_cache/ (a rerun asks only what it has not asked with the same prompt and params); writes
data/labels/llm_labels.parquet and metrics/llm_label.json.
"""
from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
from pathlib import Path

import polars as pl
from tqdm import tqdm

from stages.common.io import log, read_table, setup_logging, write_json, write_table
from stages.common.local_teacher import local_teacher
from stages.common.params import load_params, require
from stages.common.schema import SPANS
from stages.common.spans import align
from stages.common.teacher import (AnswerCache, ClientSettings, Prompt, RequestSpec, ask_all,
                                   parse_answer)

HEADLINES = Path("data/fetched/headlines.parquet")
CACHE_DIR = Path("data/llm_cache")
OUT = Path("data/labels/llm_labels.parquet")
METRICS = Path("metrics/llm_label.json")
LOCAL = "local"  # endpoint.base_url value that starts the bundled llama.cpp teacher


def select_headlines(headlines: pl.DataFrame, limit: int | None, seed: int) -> pl.DataFrame:
    """A seeded subset spread over all dates; adding headlines to the source keeps earlier picks mostly stable."""
    if not limit or limit >= headlines.height:
        return headlines
    rank = headlines["id"].map_elements(lambda i: hashlib.sha256(f"{seed}:{i}".encode()).hexdigest(),
                                        return_dtype=pl.String)
    return headlines.with_columns(rank=rank).sort("rank").head(limit).drop("rank")


def label_row(text: str, answer: dict | None, failure: str | None, occurrences: str) -> dict:
    """One output row from a cached answer (or the failure that prevented one)."""
    if answer is None:
        return {"valid": False, "error": f"request_failed: {failure or 'not asked'}", "raw_answer": None,
                "finish_reason": None, "result": [], "normalized_result": [], "spans": [], "hallucinated": [],
                "length_mismatch": False}
    parsed = parse_answer(answer["content"])
    spans, hallucinated = align(text, parsed["result"], occurrences)
    return {**parsed, "raw_answer": answer["content"], "finish_reason": answer.get("finish_reason"),
            "spans": spans, "hallucinated": hallucinated,
            "length_mismatch": parsed["valid"] and len(parsed["result"]) != len(parsed["normalized_result"])}


LABEL_SCHEMA = {"valid": pl.Boolean, "error": pl.String, "raw_answer": pl.String, "finish_reason": pl.String,
                "result": pl.List(pl.String), "normalized_result": pl.List(pl.String), "spans": SPANS,
                "hallucinated": pl.List(pl.String), "length_mismatch": pl.Boolean}


def label_table(headlines: pl.DataFrame, spec: RequestSpec, cache: AnswerCache, failures: dict[str, str],
                occurrences: str) -> pl.DataFrame:
    fingerprint = spec.fingerprint()
    rows = [label_row(text, cache.get(spec.cache_key(text, fingerprint)), failures.get(text), occurrences)
            for text in headlines["text"]]
    return pl.concat([headlines, pl.DataFrame(rows, schema=LABEL_SCHEMA)], how="horizontal")


def label_metrics(labels: pl.DataFrame, answers: list[dict]) -> dict:
    usage = [a.get("usage") or {} for a in answers]
    finish = labels.filter(pl.col("finish_reason").is_not_null())["finish_reason"].value_counts(sort=True)
    return {
        "headlines": labels.height,
        "valid": int(labels["valid"].sum()),
        "invalid_answers": int((~labels["valid"] & labels["raw_answer"].is_not_null()).sum()),
        "failed_requests": int(labels["raw_answer"].is_null().sum()),
        "length_mismatch": int(labels["length_mismatch"].sum()),
        "headlines_with_company": int((labels["spans"].list.len() > 0).sum()),
        "spans": int(labels["spans"].list.len().sum()),
        "hallucinated_mentions": int(labels["hallucinated"].list.len().sum()),
        "finish_reason": {r["finish_reason"]: r["count"] for r in finish.iter_rows(named=True)},
        "prompt_tokens": sum(u.get("prompt_tokens", 0) for u in usage),
        "completion_tokens": sum(u.get("completion_tokens", 0) for u in usage),
    }


def main() -> None:
    setup_logging()
    params = load_params("llm_label")
    endpoint = require(params, "endpoint", "llm_label")
    spec = RequestSpec(model=require(params, "endpoint.model", "llm_label"),
                       prompt=Prompt.load(require(params, "prompt_file", "llm_label")),
                       response_format=endpoint.get("response_format", "none"),
                       generation=require(params, "generation", "llm_label"))
    headlines = select_headlines(read_table(HEADLINES, ["id", "text", "date", "source"]),
                                 params.get("limit"), params.get("sample_seed", 0))
    cache = AnswerCache(CACHE_DIR)
    fingerprint = spec.fingerprint()
    todo = sorted({t for t in headlines["text"] if spec.cache_key(t, fingerprint) not in cache})
    log.info("llm_label: %d headlines, %d cached, %d to ask %s", headlines.height,
             headlines.height - len(todo), len(todo), spec.model)
    failures: dict[str, str] = {}
    if todo:
        base_url = endpoint["base_url"]
        server = (local_teacher(spec.model) if base_url == LOCAL else contextlib.nullcontext(base_url))
        token_env = endpoint.get("token_env")
        with server as url, tqdm(total=len(todo), desc="llm_label", unit="headline") as progress:
            settings = ClientSettings(base_url=url, token=os.environ.get(token_env) if token_env else None,
                                      concurrency=params.get("concurrency", 8),
                                      timeout_s=params.get("timeout_s", 120),
                                      max_attempts=params.get("max_attempts", 5))
            try:
                stats, failures = asyncio.run(ask_all(spec, todo, cache, settings, progress.update))
            finally:
                cache.close()
        log.info("llm_label: %d calls, %d retries, failures %s", stats.calls, stats.retries, stats.failures)
    labels = label_table(headlines, spec, cache, failures, params.get("occurrences", "all"))
    used = [a for t in headlines["text"] if (a := cache.get(spec.cache_key(t, fingerprint)))]
    metrics = label_metrics(labels, used)
    write_table(labels, OUT)
    write_json(METRICS, metrics)
    log.info("llm_label: %d valid, %d invalid, %d failed, %d spans, %d hallucinated mentions -> %s",
             metrics["valid"], metrics["invalid_answers"], metrics["failed_requests"], metrics["spans"],
             metrics["hallucinated_mentions"], OUT)


if __name__ == "__main__":
    main()
