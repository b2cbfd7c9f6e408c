"""llm_label: ask the teacher LLM for the companies in every headline, align its answers to spans.

Reads data/fetched/headlines.parquet and the prompt file; keeps every answer in the answer store data/llm_cache/,
which every branch reads (a rerun asks only what it has not asked with the same prompt and params); writes the
answers it used to data/labels/llm_answers/ (sorted by key, without this machine's latencies: what `dvc
push/pull` share, byte-identical wherever they were paid for; a run first seeds the store from it),
data/labels/llm_labels.parquet, metrics/llm_label.json (labels and tokens) and metrics/speed/llm_label.json
(latencies, requests in flight, endpoint time and cost: machine- and network-dependent, so a report, git-ignored
and no DVC output).

`python -m stages.llm_label --plan` prints what a run would ask and cost, after the checks a run makes before
its first paid request (the endpoint answers, takes the token, serves the model), without asking for any answer.

With llm_label.budget_usd, the answers a run uses may cost that much in all (cached ones at what their records
say): requests go in chunks that fit what is left, and the stage stops before one that would pass it, every answer
bought cached, saying how far it got and what the rest would cost; a rerun with a larger cap buys only the rest.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from array import array
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import cast

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from stages.core.cli import run_stage, setup_logging, stage_parser
from stages.core.errors import EndpointError, InputError
from stages.core.io import log, write_csv, write_json
from stages.core.params import load_params
from stages.core.paths import dvc_paths
from stages.core.schema import HEADLINE_COLUMNS, seeded_rank
from stages.core.stage_params import Cost, Endpoint, LlmLabelParams
from stages.http.answer_cache import AnswerCache, CacheWriteError, key_hash, publish, seed
from stages.teacher.endpoint import LOCAL, Asker, BudgetReached, ModelMismatch, describe_failures, preflight
from stages.teacher.labels import label_figures, label_table
from stages.teacher.local_server import gguf_path, gguf_sha256
from stages.teacher.request import Extractive, Prompt, RequestSpec
from stages.teacher.usage import UsageTotals, estimate_cost, usage_totals


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
    spec = RequestSpec(
        model=params.endpoint.model,
        prompt=Prompt.load(params.prompt_file),
        response_format=params.endpoint.response_format,
        generation=generation,
        extractive=extractive,
        model_file_sha256=model_file_sha256,
    )
    return [spec.for_sample(i) for i in range(samples)]


# The figures of label_metrics that measure the endpoint and the network (latencies, requests in flight, retries,
# endpoint time and what it cost): they go to the speed report (git-ignored, no DVC output), the rest to the
# metrics file.
SPEED_KEYS = (
    "latency_s",
    "concurrency",
    "retries",
    "endpoint_hours",
    "estimated_cost_usd",
    "headlines_per_s",
    "usd_per_million_headlines",
)


def label_metrics(figures: pl.DataFrame, totals: dict, cost: Cost) -> dict:
    """Deterministic given the cache: every figure describes the labels (label_figures of every headline) and the
    answers behind them (usage totals), not this particular run."""
    finish = figures.filter(pl.col("finish_reason").is_not_null())["finish_reason"].value_counts(sort=True)
    errors = figures.filter(pl.col("error_kind").is_not_null())["error_kind"].value_counts(sort=True)
    metrics = {
        "headlines": figures.height,
        "valid": int(figures["valid"].sum()),
        "invalid_answers": int((~figures["valid"] & figures["answered"]).sum()),
        "failed_requests": int((~figures["answered"]).sum()),
        "errors_by_kind": {r["error_kind"]: r["count"] for r in errors.iter_rows(named=True)},
        "headlines_with_company": int((figures["spans"] > 0).sum()),
        "spans": int(figures["spans"].sum()),
        "hallucinated_mentions": int(figures["hallucinated"].sum()),
        "finish_reason": {r["finish_reason"]: r["count"] for r in finish.iter_rows(named=True)},
    }
    totals = dict(totals)
    endpoint_s = totals.pop("endpoint_s")
    price = estimate_cost(totals["prompt_tokens"], totals["completion_tokens"], endpoint_s, cost)
    # Per headline, not per answer: with self-consistency every headline costs `samples` answers.
    metrics |= {
        **totals,
        "endpoint_hours": price["endpoint_hours"],
        "estimated_cost_usd": price["estimated_cost_usd"],
        "headlines_per_s": round(figures.height / endpoint_s, 3) if endpoint_s else None,
        "usd_per_million_headlines": round(price["usd"] / max(1, figures.height) * 1e6, 4),
    }
    if figures["agreement"].is_not_null().any():
        metrics["self_consistency_agreement"] = round(cast(float, figures["agreement"].mean()), 4)
    return metrics


def plan(requests: int, cached_answers: Iterable[dict], spec: RequestSpec, params: LlmLabelParams) -> dict:
    """What a run would ask and roughly cost, from what cached answers say about this endpoint."""
    totals = usage_totals(cached_answers)
    answered = totals["answers"]
    timed = totals["latency_s"]["answers"]  # answers pulled from a remote carry no latency (it was a machine's)
    if answered:
        per_call = {name: totals[name] / answered for name in ("prompt_tokens", "completion_tokens")}
    else:  # nothing measured yet: a rough guess from prompt length
        per_call = {"prompt_tokens": len(json.dumps(spec.body("x" * 60))) / 4, "completion_tokens": 30}
    if timed:  # the endpoint's time per answer is its latency shared by the requests in flight with it
        latency_s = totals["latency_s"]["total"] / timed
        endpoint_s = latency_s * requests / (totals["concurrency"].get("mean") or params.concurrency.start)
    else:  # the endpoint's expected throughput
        endpoint_s = requests / params.expected_headlines_per_s
    estimate = {
        "prompt_tokens": round(per_call["prompt_tokens"] * requests),
        "completion_tokens": round(per_call["completion_tokens"] * requests),
    }
    price = estimate_cost(estimate["prompt_tokens"], estimate["completion_tokens"], endpoint_s, params.cost)
    return {
        "requests_to_make": requests,
        "estimated_prompt_tokens": estimate["prompt_tokens"],
        "estimated_completion_tokens": estimate["completion_tokens"],
        "estimated_minutes": round(endpoint_s / 60, 1),
        "endpoint_hours": price["endpoint_hours"],
        "estimated_cost_usd": price["estimated_cost_usd"],
        "basis": (f"tokens: mean of {answered} cached answers" if answered else "tokens: a rough guess")
        + (f"; time: {timed} answers' latencies" if timed else "; time: llm_label.expected_headlines_per_s"),
        # the cap also counts the cached answers a run uses: a run stops before the request that would pass it
        "budget_usd": params.budget_usd,
        "estimate_over_budget": None if params.budget_usd is None else price["usd"] > params.budget_usd,
    }


def plan_preflight(endpoint: Endpoint, requests: int) -> bool:
    """The checks a run makes before its first paid request (teacher/endpoint.py preflight: reachable, token
    taken, model served), as one line before the plan's estimate; no answer is asked for. A failure is logged
    rather than raised, so the estimate still prints; False tells the caller to exit non-zero."""
    if not requests:
        log.info("llm_label: preflight: nothing to ask (every answer is cached), so the endpoint is not needed")
        return True
    if endpoint.base_url == LOCAL:
        log.info("llm_label: preflight: base_url local: the bundled teacher starts with the run, nothing to check")
        return True
    try:
        _, checked = preflight(endpoint, os.environ)
    except EndpointError as error:
        log.error("%s", error)
        return False
    log.info("%s", checked)
    return True


Request = tuple[RequestSpec, str, dict]  # (spec, headline, the request body)


def missing_answers(
    specs: list[RequestSpec], texts: Iterable[str], cache: AnswerCache
) -> tuple[dict[str, list[str]], list[Request], dict[str, str]]:
    """Each text's cache keys (one per spec); the requests with no cached answer, their bodies built once; and
    {legacy key: key} of the answers found only under the key formula of older runs (to re-file under today's
    key, so changing a param no request carries never misses them)."""
    keys: dict[str, list[str]] = {}
    todo: list[Request] = []
    legacy: dict[str, str] = {}
    for text in texts:
        keys[text] = []
        for spec in specs:
            body = spec.body(text)
            key = spec.body_key(body)
            keys[text].append(key)
            if key in cache:
                continue
            old = spec.legacy_cache_key(text) if len(cache) else None  # an empty cache holds no old keys
            if old and old in cache:
                legacy[old] = key
            else:
                todo.append((spec, text, body))
    return keys, todo, legacy


BATCH_ROWS = 10_000  # headlines read, asked and labelled at a time: memory holds one batch, not the whole feed


def headline_batches(path: Path, limit: int | None, seed: int) -> tuple[int, Iterator[pl.DataFrame]]:
    """How many headlines llm_label labels (all, or `limit` of them by seeded rank), and those headlines in
    batches, in file order (fetch writes them sorted by id). The file is checked at once, read lazily."""
    if not path.exists():
        raise InputError(f"{path}: not found (run the upstream stage first: dvc repro)")
    source = pq.ParquetFile(path)
    missing = [c for c in HEADLINE_COLUMNS if c not in source.schema_arrow.names]
    if missing:
        raise InputError(f"{path}: missing column(s) {missing}; has {source.schema_arrow.names}")
    chosen = None
    if limit and limit < source.metadata.num_rows:
        chosen = select_headlines(cast(pl.DataFrame, pl.from_arrow(source.read(columns=["id"]))), limit, seed)["id"]

    def batches() -> Iterator[pl.DataFrame]:
        for batch in source.iter_batches(BATCH_ROWS):
            frame = cast(pl.DataFrame, pl.from_arrow(pa.Table.from_batches([batch])))
            frame = frame if chosen is None else frame.filter(pl.col("id").is_in(chosen))
            if frame.height:
                yield frame

    return source.metadata.num_rows if chosen is None else len(chosen), batches()


def count_missing(specs: list[RequestSpec], batches: Iterator[pl.DataFrame], cache: AnswerCache) -> tuple[int, int]:
    """(headlines, requests a run would make), without calling anything: a text repeated in later batches is
    counted once, as the run asks it once (8 bytes a request to remember)."""
    headlines, counted = 0, set[int]()
    for batch in batches:
        _, todo, _ = missing_answers(specs, batch["text"].unique(maintain_order=True), cache)
        headlines += batch.height
        counted.update(key_hash(spec.body_key(body)) for spec, _, body in todo)
    return headlines, len(counted)


def main(argv: list[str] | None = None) -> None:
    parser = stage_parser(
        __doc__.splitlines()[0],
        optional=("headlines", "cache-dir", "answers", "out", "metrics", "speed", "concurrency-plot"),
    )
    parser.add_argument(
        "--plan",
        action="store_true",
        help="check the endpoint, print what a run would ask and cost; ask for no answer (headlines and cache "
        "default to dvc.yaml's paths)",
    )
    args = parser.parse_args(argv)
    if args.plan and not (args.headlines and args.cache_dir and args.answers):
        named = dvc_paths(Path.cwd())
        args.headlines, args.cache_dir = args.headlines or named["headlines"], args.cache_dir or named["llm_cache"]
        args.answers = args.answers or named["llm_answers"]
    missing = [f"--{name.replace('_', '-')}" for name, value in vars(args).items() if value is None and not args.plan]
    if missing:
        parser.error(f"{', '.join(missing)} required (dvc.yaml's llm_label command gives them all; --plan needs none)")
    setup_logging()
    params: LlmLabelParams = load_params(LlmLabelParams)
    specs = request_specs(params, gguf_sha256(gguf_path()) if params.endpoint.base_url == LOCAL else None)
    total, batches = headline_batches(args.headlines, params.limit, params.sample_seed)
    try:
        with AnswerCache(args.cache_dir) as cache:
            if seeded := seed(cache, args.answers):
                log.info("llm_label: %d answer(s) of %s added to the store %s", seeded, args.answers, args.cache_dir)
            if cache.skipped:
                log.warning(
                    "llm_label: skipped %d unreadable line(s) of the answer cache (the first: %s); answers "
                    "found nowhere else are asked again",
                    cache.skipped,
                    cache.first_skipped,
                )
            if args.plan:
                headlines, requests = count_missing(specs, batches, cache)
                log.info(
                    "llm_label: %d headlines x %d sample(s): %d requests to make to %s at %s",
                    headlines,
                    len(specs),
                    requests,
                    specs[0].model,
                    params.endpoint.base_url,
                )
                ready = plan_preflight(params.endpoint, requests)
                print(json.dumps(plan(requests, cache.answers(), specs[0], params), indent=2))
                if not ready:
                    sys.exit(1)  # the preflight's line above says what to fix
                return
            log.info(
                "llm_label: labelling %s with %s at %s; %d answers cached",
                args.headlines,
                specs[0].model,
                params.endpoint.base_url,
                len(cache),
            )
            try:
                figures, failures, points, totals = label_all(
                    batches, specs, cache, params, args.out, args.answers, total
                )
            except BudgetReached as stop:  # what is left, counted in the store as --plan counts it
                _, remaining = count_missing(
                    specs, headline_batches(args.headlines, params.limit, params.sample_seed)[1], cache
                )
                sys.exit(stop.explain(remaining))
    except ModelMismatch as error:  # the answers in flight were cached under the model that gave them
        sys.exit(f"llm_label: {error}; set it to the served model's id (it is part of every answer's cache key)")
    except CacheWriteError as error:  # a full disk: one line; the answers in flight were cached first
        sys.exit(
            f"llm_label: cannot write the answer cache: {error}; every answer received before it is cached, "
            f"so once that is fixed `dvc repro` asks only for the rest"
        )
    metrics = label_metrics(figures, totals, params.cost) | {"cache_lines_skipped": cache.skipped}
    write_json(args.metrics, {key: value for key, value in metrics.items() if key not in SPEED_KEYS})
    write_json(args.speed, {key: metrics[key] for key in SPEED_KEYS if key in metrics})
    write_csv(args.concurrency_plot, points, ["answer", "concurrency"])
    log.info(
        "llm_label: %d headlines: %d valid, %d invalid, %d failed, %d spans, %d hallucinated mentions, ~$%.4f -> %s",
        metrics["headlines"],
        metrics["valid"],
        metrics["invalid_answers"],
        metrics["failed_requests"],
        metrics["spans"],
        metrics["hallucinated_mentions"],
        metrics["estimated_cost_usd"],
        args.out,
    )
    if failures and params.fail_on_request_errors:
        sys.exit(
            f"llm_label: {describe_failures(failures, params.max_attempts)}; every answer received "
            f"is cached, so `dvc repro` again asks only for these. To carry on with them flagged valid=false "
            f"instead, set llm_label.fail_on_request_errors: false."
        )


def cached_locations(keys: dict[str, list[str]], cache: AnswerCache) -> np.ndarray:
    """Where the answers of these keys that the store holds lie (each once)."""
    found = [where for ks in keys.values() for key in ks if (where := cache.location(key)) is not None]
    return np.unique(np.array(found, dtype=np.uint64))


def label_all(
    batches: Iterator[pl.DataFrame],
    specs: list[RequestSpec],
    cache: AnswerCache,
    params: LlmLabelParams,
    out: Path,
    answers: Path,
    total: int,
) -> tuple[pl.DataFrame, dict[str, str], list[dict], dict]:
    """Ask for what is missing and write the label table, a batch at a time, and publish every answer used to
    `answers`. Returns the per-headline figures, the failed headlines, the concurrency
    plot and the usage totals of every answer used."""
    figures: list[pl.DataFrame] = []
    failures: dict[str, str] = {}
    used = array("Q")  # used: where each answer read lies in the cache
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_suffix(out.suffix + ".tmp")
    with contextlib.ExitStack() as stack:
        progress = stack.enter_context(tqdm(total=total, desc="llm_label", unit="headline"))
        asker, writer, asked = Asker(params, cache, stack, progress), None, 0
        for batch in batches:
            keys, todo, legacy = missing_answers(specs, batch["text"].unique(maintain_order=True), cache)
            cache.refile(legacy)
            if params.budget_usd is not None:  # what the cached answers this batch uses cost counts too
                for answer in cache.answers_at(cached_locations(keys, cache)):
                    asker.used.add(answer)
            asked += len(todo)
            failures |= asker.ask(todo)
            table = label_table(batch, specs, cache, failures, params.occurrences, keys)
            used.extend(where for ks in keys.values() for key in ks if (where := cache.location(key)) is not None)
            figures.append(label_figures(table))
            arrow = table.to_arrow()
            writer = writer or stack.enter_context(
                pq.ParquetWriter(partial, arrow.schema, compression="zstd", write_statistics=False)
            )
            writer.write_table(arrow)
            progress.n = sum(f.height for f in figures)  # cached headlines too, and exact after each batch
            progress.refresh()
    if writer is None:
        raise InputError("llm_label: no headline to label (fetch's output is empty)")
    os.replace(partial, out)
    usage = UsageTotals()
    locations = np.unique(np.frombuffer(used, dtype=np.uint64))
    for answer in cache.answers_at(locations):  # in arrival order
        usage.add(answer)
    published = publish(cache, locations, answers)  # the output `dvc push` shares
    cache.close()
    log.info(
        "llm_label: %d answers asked, %d cached; %d published to %s; %s",
        asked,
        usage.count - asked,
        published,
        answers,
        asker.summary(),
    )
    return pl.concat(figures, rechunk=False), failures, usage.concurrency_points(), usage.totals()


if __name__ == "__main__":
    run_stage(main)
