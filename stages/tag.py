"""tag: the chosen student labels every fetched headline, in-process or at a served student's URL.

Reads data/fetched/headlines.parquet in row batches (pyarrow) and writes data/tagged/headlines.parquet a row group
at a time, so memory stays flat as the feed grows: id, date, text, spans (start, end, text, score, and `name`: the
canonical name of the mention's cluster in cluster_sample's clusters, or null), model and model_version (a hash of
the model directory's files, and of the decode settings of params `predict` where they differ from the folder's own:
in-process, the student decodes as params say). Each batch's spans go to data/tag_cache (an answer store every
branch reads, keyed by the model version, where it ran and the batch's texts; the answers a run used, sorted by
key and without timings, are its output data/tagged/answers/) as soon as they exist, so an interrupted run resumes
where it stopped, and the table is written from the cache: the same model and headlines give a byte-identical file.
The fetched table's other columns (`source`, fetch.keep_columns) follow, as they are. metrics/tag.json: counts,
the model and its version; metrics/speed/tag.json (a report: git-ignored, no DVC output): batches found cached,
this run's headlines/s and USD per million headlines at evaluate.cpu_usd_per_hour.

With tag.url, each batch is POSTed in the Hugging Face Inference Endpoints body ({"inputs": [texts], "parameters":
{"batch_size": tag.batch_size}}: the server predicts in the batches this process would) through llm_label's
client (retries, backoff, adaptive requests in flight); the reply is the token-classification shape: per text a
list of {entity_group, score, word, start, end}.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from tqdm import tqdm

from stages.core.cli import run_stage, stage_args
from stages.core.errors import EndpointError, InputError, PipelineError
from stages.core.io import log, read_table, write_json
from stages.core.metrics import usd_per_million
from stages.core.names import CanonicalNames
from stages.core.params import load_params
from stages.core.stage_params import ClusterSampleParams, EvaluateParams, TagParams
from stages.http.answer_cache import AnswerCache, publish, seed
from stages.http.client import BadReply, ClientSettings, ask, ask_each
from stages.serving.layout import model_version
from stages.students.config import PredictParams
from stages.students.registry import STUDENTS

COLUMNS = ["id", "date", "text"]
READ_ROWS = 8192  # rows pyarrow reads at a time
ROW_GROUP_ROWS = 65536  # rows buffered before a row group is written
SPAN = pa.struct(
    [("start", pa.int32()), ("end", pa.int32()), ("text", pa.string()), ("score", pa.float64()), ("name", pa.string())]
)
TAGGED = pa.schema(
    [
        ("id", pa.string()),
        ("date", pa.date32()),
        ("text", pa.string()),
        ("spans", pa.list_(SPAN)),
        ("model", pa.string()),
        ("model_version", pa.string()),
    ]
)

Spans = list[list[dict]]  # per headline: {start, end, score}


def headline_batches(path: Path, batch_size: int, carried: list[pa.Field] | None = None) -> Iterator[pa.Table]:
    """id, date and text (and the carried columns) in batches of exactly batch_size rows (the last may be shorter),
    read READ_ROWS at a time: the same file always gives the same batches, and memory holds at most a batch and a
    read."""
    parquet = pq.ParquetFile(path)
    missing = [c for c in COLUMNS if c not in parquet.schema_arrow.names]
    if missing:
        raise InputError(f"{path}: missing column(s) {missing}; has {parquet.schema_arrow.names}")
    columns = COLUMNS + [field.name for field in carried or []]
    pending, rows = [], 0
    for read in parquet.iter_batches(batch_size=max(READ_ROWS, batch_size), columns=columns):
        pending.append(read)
        rows += read.num_rows
        if rows < batch_size:
            continue
        table = pa.Table.from_batches(pending)
        whole = rows - rows % batch_size
        for start in range(0, whole, batch_size):
            yield table.slice(start, batch_size)
        rest = table.slice(whole)
        pending, rows = rest.to_batches(), rest.num_rows
    if rows:
        yield pa.Table.from_batches(pending)


def carried_fields(path: Path) -> list[pa.Field]:
    """The fetched table's columns beyond id, date and text (`source` and fetch.keep_columns), which the tagged
    table carries as they are, after its own columns."""
    schema = pq.read_schema(path)
    fields = [schema.field(name) for name in schema.names if name not in COLUMNS]
    clash = [field.name for field in fields if field.name in TAGGED.names]
    if clash:
        raise InputError(
            f"{path}: column(s) {clash} would take the place of tag's own columns of that name; keep them under "
            f"another name (params.yaml fetch.keep_columns)"
        )
    return fields


def batch_key(version: str, via: str, texts: list[str]) -> str:
    return hashlib.sha256(orjson.dumps({"model_version": version, "via": via, "texts": texts})).hexdigest()


def kept(spans: Spans) -> str:
    """What the cache holds of a batch's spans (texts and names follow from the headline)."""
    return orjson.dumps(
        [[{"start": s["start"], "end": s["end"], "score": s["score"]} for s in found] for found in spans]
    ).decode()


def predict_missing(
    predict: Callable,
    batches: Iterator[pa.Table],
    cache: AnswerCache,
    version: str,
    batch_size: int,
    progress: Callable[[int], None],
) -> dict:
    """Predict every batch the cache lacks, in this process; each goes to the cache as soon as it is done."""
    run = {"batches": 0, "batches_computed": 0, "headlines_computed": 0, "seconds": 0.0}
    for batch in batches:
        texts = batch["text"].to_pylist()
        key = batch_key(version, "in_process", texts)
        if key not in cache:
            started = time.perf_counter()
            spans = predict(texts, batch_size)
            elapsed = time.perf_counter() - started
            cache.put(
                {
                    "key": key,
                    "model": version,
                    "content": kept(spans),
                    "headlines": len(texts),
                    "latency_s": round(elapsed, 4),
                }
            )
            run["batches_computed"] += 1
            run["headlines_computed"] += len(texts)
            run["seconds"] += elapsed
        run["batches"] += 1
        progress(len(texts))
    return run


def served_reply(texts: list[str]) -> Callable[[bytes], dict]:
    """Reads a served student's reply to one batch (the token-classification shape, one list per text) into what
    the cache keeps; a reply that is not that (a proxy's error page, a list of the wrong length, offsets outside
    their headline) is a BadReply, which the client retries."""

    def read(raw: bytes) -> dict:
        try:
            reply = orjson.loads(raw)
        except orjson.JSONDecodeError as error:
            raise BadReply(f"not JSON: {error}") from None
        if not isinstance(reply, list) or len(reply) != len(texts) or not all(isinstance(e, list) for e in reply):
            raise BadReply(f"expected a list of {len(texts)} lists of entities, got {str(reply)[:80]}")
        spans = []
        for text, entities in zip(texts, reply):
            found = []
            for e in entities:
                start, end, score = (e.get(k) if isinstance(e, dict) else None for k in ("start", "end", "score"))
                if not (
                    isinstance(start, int)
                    and isinstance(end, int)
                    and 0 <= start < end <= len(text)
                    and isinstance(score, (int, float))
                ):
                    raise BadReply(f"entity {str(e)[:80]} is no span of {text[:40]!r} with a score")
                found.append({"start": start, "end": end, "score": float(score)})
            spans.append(sorted(found, key=lambda s: s["start"]))
        return {"content": kept(spans)}

    return read


def ask_served(
    batches: Iterator[pa.Table], cache: AnswerCache, params: TagParams, version: str, progress: Callable[[int], None]
) -> dict:
    """POST every batch the cache lacks to the served student (llm_label's client: retries, backoff, adaptive
    requests in flight); each answer goes to the cache as it arrives. Batches that still fail stop the stage
    after the others are cached, so the next run asks only for those."""
    url = params.url
    assert url is not None  # main asks a served student only when params name its URL
    token = os.environ.get(params.token_env) if params.token_env else None
    settings = ClientSettings(
        base_url=url,
        concurrency=params.concurrency,
        timeout_s=params.timeout_s,
        max_attempts=params.max_attempts,
        token=token,
    )
    run: dict[str, Any] = {"batches": 0, "batches_computed": 0, "headlines_computed": 0}

    def missing() -> Iterator[tuple[str, list[str]]]:
        for batch in batches:
            texts = batch["text"].to_pylist()
            key = batch_key(version, "served", texts)
            run["batches"] += 1
            if key in cache:
                progress(len(texts))
            else:
                yield key, texts

    async def answer(session, gate, stats, job: tuple[str, list[str]]) -> None:
        key, texts = job
        body = {"inputs": texts, "parameters": {"batch_size": params.batch_size}}  # the batches in-process uses
        reply = await ask(session, url, body, settings, stats, gate, read_reply=served_reply(texts))
        cache.put({"key": key, "model": version, "headlines": len(texts), **reply})
        run["batches_computed"] += 1
        run["headlines_computed"] += len(texts)
        progress(len(texts))

    started = time.perf_counter()
    stats, failed = asyncio.run(ask_each(missing(), settings, answer, lambda job: job[0]))
    run |= {
        "seconds": time.perf_counter() - started,
        "requests": stats.calls,
        "retries": stats.retries,
        "concurrency": stats.limit_summary,
    }
    if failed:
        raise EndpointError(
            f"tag: {len(failed)} batch(es) failed at {params.url}: "
            f"{dict(sorted(Counter(failed.values()).items()))} (after up to {params.max_attempts} "
            f"attempts each); every answered batch is cached, so `dvc repro` asks only for these"
        )
    return run


def cached_spans(cache: AnswerCache, key: str, texts: list[str]) -> Spans:
    answer = cache.get(key)
    if answer is None:
        raise PipelineError(f"tag: no cached spans for a batch starting {texts[0]!r} (key {key[:12]})")
    spans = orjson.loads(answer["content"])
    if len(spans) != len(texts):
        raise PipelineError(f"tag: the cached answer {key[:12]} has {len(spans)} headlines, its batch {len(texts)}")
    return spans


def tagged_batch(
    batch: pa.Table,
    spans: Spans,
    canonical: CanonicalNames,
    model: str,
    version: str,
    carried: list[pa.Field] | None = None,
) -> pa.Table:
    texts = batch["text"].to_pylist()
    rows = [
        [
            {
                "start": s["start"],
                "end": s["end"],
                "text": text[s["start"] : s["end"]],
                "score": s["score"],
                "name": canonical(text[s["start"] : s["end"]]),
            }
            for s in found
        ]
        for text, found in zip(texts, spans)
    ]
    n = batch.num_rows
    return pa.Table.from_arrays(
        [
            batch["id"].cast(pa.string()),
            batch["date"].cast(pa.date32()),
            batch["text"].cast(pa.string()),
            pa.array(rows, type=pa.list_(SPAN)),
            pa.array([model] * n, pa.string()),
            pa.array([version] * n, pa.string()),
            *(batch[field.name] for field in carried or []),
        ],
        schema=pa.schema([*TAGGED, *(carried or [])]),
    )


def write_tagged(
    out: Path,
    batches: Iterator[pa.Table],
    spans_of: Callable[[list[str]], Spans],
    canonical: CanonicalNames,
    model: str,
    version: str,
    carried: list[pa.Field] | None = None,
) -> dict:
    """The tagged table (with the carried columns of the headlines, when given), ROW_GROUP_ROWS rows at a time,
    via a temp file; returns its counts."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(out.suffix + ".tmp")
    counts = {"headlines": 0, "headlines_with_company": 0, "spans": 0, "spans_with_name": 0}
    buffered: list[pa.Table] = []

    with pq.ParquetWriter(tmp, pa.schema([*TAGGED, *(carried or [])]), compression="zstd") as writer:

        def flush():
            writer.write_table(pa.concat_tables(buffered), row_group_size=ROW_GROUP_ROWS)
            buffered.clear()

        for batch in batches:
            table = tagged_batch(batch, spans_of(batch["text"].to_pylist()), canonical, model, version, carried)
            found, names = (
                pc.list_value_length(table["spans"]),
                pc.struct_field(pc.list_flatten(table["spans"]), "name"),
            )
            counts["headlines"] += table.num_rows
            counts["headlines_with_company"] += pc.sum(pc.greater(found, 0)).as_py() or 0
            counts["spans"] += len(names)
            counts["spans_with_name"] += len(names) - names.null_count
            buffered.append(table)
            if sum(t.num_rows for t in buffered) >= ROW_GROUP_ROWS:
                flush()
        if buffered:
            flush()
    os.replace(tmp, out)
    return counts


def canonical_names(clusters_path: Path, params: ClusterSampleParams) -> CanonicalNames:
    clusters = read_table(clusters_path, ["name", "representative"])
    return CanonicalNames(
        clusters["name"].to_list(),
        clusters["representative"].to_list(),
        params.scorer,
        params.threshold,
        frozenset(params.strip_suffixes),
    )


def main(argv: list[str] | None = None) -> None:
    args = stage_args(
        __doc__.splitlines()[0],
        ("headlines", "clusters", "fp32", "export", "cache-dir", "answers", "out", "metrics", "speed"),
        argv,
    )
    params: TagParams = load_params(TagParams)
    usd_per_hour = load_params(EvaluateParams).cpu_usd_per_hour
    canonical = canonical_names(args.clusters, load_params(ClusterSampleParams))
    model_dir = args.export if params.form == "export" else args.fp32
    model = params.student + ("_export" if params.form == "export" else "")
    # In-process, the student decodes as params `predict` says (dvc.yaml: predict.<student>); a served student
    # decodes as its folder was exported.
    decoding = load_params(PredictParams)
    decode = decoding.decode(params.student) if params.url is None else {}
    version = model_version(model_dir, decode)
    total = pq.ParquetFile(args.headlines).metadata.num_rows
    via = "in_process" if params.url is None else "served"

    def batches():
        return headline_batches(args.headlines, params.batch_size)

    with AnswerCache(args.cache_dir) as cache:
        if seeded := seed(cache, args.answers):
            log.info("tag: %d answer(s) of %s added to the store %s", seeded, args.answers, args.cache_dir)
        with tqdm(total=total, desc="tag", unit="headline") as progress:
            if params.url is None:
                predict = STUDENTS[params.student].load(model_dir, decode=decode)
                run = predict_missing(predict, batches(), cache, version, params.batch_size, progress.update)
            else:
                run = ask_served(batches(), cache, params, version, progress.update)

        used: list[int] = []  # where each batch's answer lies in the store

        def spans_of(texts):
            key = batch_key(version, via, texts)
            if (where := cache.location(key)) is not None:
                used.append(where)
            return cached_spans(cache, key, texts)

        carried = carried_fields(args.headlines)
        written = headline_batches(args.headlines, params.batch_size, carried)
        counts = write_tagged(args.out, written, spans_of, canonical, model, version, carried)
        publish(cache, used, args.answers)  # the output `dvc push` shares
    per_s = run["headlines_computed"] / run["seconds"] if run["seconds"] else None
    metrics = {
        **counts,
        "model": model,
        "model_version": version,
        "via": via,
        "batch_size": params.batch_size,
        "batches": run["batches"],
    }
    # this run's: what the cache already held, speed and price of its predictions (null when every batch came from
    # the cache), the served student's requests; machine-dependent, so in the speed report (git-ignored, no DVC output)
    speed = {
        "batches_cached": run["batches"] - run["batches_computed"],
        "headlines_per_s": round(per_s, 1) if per_s else None,
        "usd_per_hour": usd_per_hour,
        "usd_per_million_headlines": usd_per_million(per_s, usd_per_hour) if per_s else None,
        **{k: run[k] for k in ("requests", "retries", "concurrency") if k in run},
    }
    write_json(args.metrics, metrics)
    write_json(args.speed, speed)
    log.info(
        "tag: %d headlines, %d with a company, %d spans (%d with a cluster name) by %s %s (%s); %s headlines/s -> %s",
        counts["headlines"],
        counts["headlines_with_company"],
        counts["spans"],
        counts["spans_with_name"],
        model,
        version,
        via,
        speed["headlines_per_s"],
        args.out,
    )


if __name__ == "__main__":
    run_stage(main)
