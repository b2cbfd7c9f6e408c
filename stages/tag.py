"""tag: the chosen student labels every fetched headline, in-process or at a served student's URL.

Reads data/fetched/headlines.parquet in row batches (pyarrow) and writes data/tagged/headlines.parquet a row group
at a time, so memory stays flat as the feed grows: id, date, text, spans (start, end, text, score, and `name`: the
canonical name of the mention's cluster in cluster_sample's clusters, or null), model and model_version (a hash of
the model directory's files, and of the decode settings of params `predict` where they differ from the folder's own:
in-process, the student decodes as params say). Each headline's spans, checked exactly, go to data/tag_cache (an
answer store every branch reads, keyed by the model version, where it ran and the headline's text, so headlines
inserted anywhere cost only themselves; the answers a run used, sorted by key and without timings, are its output
data/tagged/answers/) as soon as its batch is done, so an interrupted run resumes where it stopped, and the table is
written from the store. The fetched table's other columns (`source`, fetch.keep_columns) follow, as they are.
metrics/tag.json: counts, the model and its version; metrics/speed/tag.json (a report: git-ignored, no DVC
output): headlines found cached, unreadable entries asked again, this run's headlines/s and USD per million
headlines at evaluate.cpu_usd_per_hour.

With tag.url, the headlines the store lacks are POSTed tag.batch_size at a time in the Hugging Face Inference
Endpoints body ({"inputs": [texts], "parameters": {"batch_size": tag.batch_size}}) through llm_label's client
(retries, backoff, adaptive requests in flight, giving up after tag.give_up_after_s of a dead URL); the reply is
the token-classification shape: per text a list of {entity_group, score, word, start, end}. The server must say it
serves the chosen folder's version (GET /health, the X-Model-Version header of each reply) where it says anything.
"""

from __future__ import annotations

import asyncio
import hashlib
import http.client
import math
import os
import time
import urllib.request
from array import array
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, cast

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
from stages.http.answer_cache import RUN_FIELDS, AnswerCache, publish, seed
from stages.http.client import BadReply, ClientSettings, EndpointDown, ask, ask_each
from stages.serving.layout import STUDENT_HEADER, VERSION_HEADER, model_version, verify_folder
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
DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # as the client's POSTs: no proxy


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


def headline_key(version: str, via: str, text: str) -> str:
    """A headline's key in the store: its text, not its place in the feed, so headlines inserted anywhere cost only
    themselves."""
    return hashlib.sha256(orjson.dumps({"model_version": version, "via": via, "text": text})).hexdigest()


class BadSpans(ValueError):
    """Spans that are not a headline's: never cached, and a cached entry holding them is asked again."""


def checked_spans(text: str, found: object) -> list[dict]:
    """A headline's spans as the store keeps them ({start, end, score}), checked exactly: integer offsets (a bool is
    no integer) with 0 <= start < end <= len(text), a finite score from 0 to 1; sorted by start, none overlapping
    or repeated. Raises BadSpans naming the first problem."""
    if not isinstance(found, list):
        raise BadSpans(f"expected a list of spans, got {type(found).__name__}")
    spans = []
    for span in found:
        start, end, score = (span.get(k) if isinstance(span, dict) else None for k in ("start", "end", "score"))
        if not (type(start) is int and type(end) is int and 0 <= start < end <= len(text)):
            raise BadSpans(f"{str(span)[:80]} is no span of {text[:40]!r} ({len(text)} characters)")
        if not (
            isinstance(score, (int, float)) and type(score) is not bool and math.isfinite(score) and 0 <= score <= 1
        ):
            raise BadSpans(f"{str(span)[:80]} has no score from 0 to 1")
        spans.append({"start": start, "end": end, "score": float(score)})
    spans.sort(key=lambda s: (s["start"], s["end"]))
    for before, after in zip(spans, spans[1:]):
        if after["start"] < before["end"]:
            raise BadSpans(f"spans {before} and {after} of {text[:40]!r} overlap")
    return spans


def put_spans(cache: AnswerCache, key: str, version: str, text: str, spans: object, **run: float) -> None:
    cache.put({"key": key, "model": version, "content": orjson.dumps(checked_spans(text, spans)).decode(), **run})


def cached_spans(cache: AnswerCache, key: str, text: str) -> list[dict] | None:
    """The headline's spans in the store, or None when it holds none it can read back (asked again)."""
    answer = cache.get(key)
    if answer is None:
        return None
    try:
        return checked_spans(text, orjson.loads(answer["content"]))
    except (orjson.JSONDecodeError, BadSpans):
        return None


class Todo:
    """The headlines of the feed the store holds no readable spans for, in chunks of up to batch_size (each text
    once a chunk), with counts; cached headlines advance the progress bar as they are passed."""

    def __init__(self, cache: AnswerCache, version: str, via: str, progress: Callable[[int], None]):
        self.cache, self.version, self.via, self.progress = cache, version, via, progress
        self.headlines = self.unreadable = 0

    def chunks(self, batches: Iterator[pa.Table], batch_size: int) -> Iterator[dict[str, str]]:
        """{key: text} chunks to compute."""
        chunk: dict[str, str] = {}
        for batch in batches:
            for text in batch["text"].to_pylist():
                self.headlines += 1
                key = headline_key(self.version, self.via, text)
                if key in chunk:
                    continue
                if key in self.cache:
                    if cached_spans(self.cache, key, text) is not None:
                        self.progress(1)
                        continue
                    self.unreadable += 1
                chunk[key] = text
                if len(chunk) == batch_size:
                    yield chunk
                    chunk = {}
        if chunk:
            yield chunk


def stored_spans(cache: AnswerCache, version: str, via: str, used: array) -> Callable[[list[str]], Spans]:
    """spans_of(texts) from the store, once every headline is in it; notes in `used` where each answer lies."""

    def spans_of(texts: list[str]) -> Spans:
        spans = []
        for text in texts:
            key = headline_key(version, via, text)
            found = cached_spans(cache, key, text)
            if found is None:
                raise PipelineError(f"tag: no cached spans for {text[:60]!r} (key {key[:12]})")
            used.append(cast(int, cache.location(key)))
            spans.append(found)
        return spans

    return spans_of


def predict_missing(predict: Callable, todo: Todo, chunks: Iterator[dict[str, str]], batch_size: int) -> dict:
    """Predict every headline the store lacks, in this process, batch_size at a time; each headline's spans go to
    the store as soon as its batch is done."""
    run = {"headlines_computed": 0, "seconds": 0.0}
    for chunk in chunks:
        texts = list(chunk.values())
        started = time.perf_counter()
        spans = predict(texts, batch_size)
        elapsed = time.perf_counter() - started
        for (key, text), found in zip(chunk.items(), spans):
            put_spans(todo.cache, key, todo.version, text, found, latency_s=round(elapsed / len(texts), 6))
        run["headlines_computed"] += len(texts)
        run["seconds"] += elapsed
        todo.progress(len(texts))
    return run


def served_reply(texts: list[str]) -> Callable[[bytes], dict]:
    """Reads a served student's reply to one batch (the token-classification shape, one list per text) into each
    text's spans; a reply that is not that (a proxy's error page, a list of the wrong length, spans that are not
    the text's) is a BadReply, which the client retries, and nothing of it is cached."""

    def read(raw: bytes) -> dict:
        try:
            reply = orjson.loads(raw)
        except orjson.JSONDecodeError as error:
            raise BadReply(f"not JSON: {error}") from None
        if not isinstance(reply, list) or len(reply) != len(texts):
            raise BadReply(f"expected a list of {len(texts)} lists of entities, got {str(reply)[:80]}")
        try:
            return {"spans": [checked_spans(text, entities) for text, entities in zip(texts, reply)]}
        except BadSpans as error:
            raise BadReply(str(error)) from None

    return read


class WrongModel(Exception):
    """The served student is not the one tag caches under: nothing it answered is kept."""


def served_identity(url: str, token: str | None, timeout_s: float) -> dict:
    """What GET <url>/health says the server serves (scripts/serve.py: student, model_version, max_batch); {} when
    it says nothing (an endpoint without that route)."""
    request = urllib.request.Request(
        url.rstrip("/") + "/health", headers={"Authorization": f"Bearer {token}"} if token else {}
    )
    try:
        with DIRECT.open(request, timeout=timeout_s) as response:
            health = orjson.loads(response.read())
    except (OSError, http.client.HTTPException, orjson.JSONDecodeError):
        return {}
    return health if isinstance(health, dict) else {}


def check_identity(identity: Mapping[str, object], params: TagParams, version: str, model_dir: Path) -> None:
    """Refuse a server that says it serves another model than tag.student's folder, or takes smaller batches."""
    served = identity.get("model_version")
    if served is not None and served != version:
        raise WrongModel(
            f"tag: {params.url} serves {identity.get('student') or 'a student'} {served}, but tag.student "
            f"{params.student} is {model_dir} ({version}); serve that folder (make serve MODEL={model_dir}) or "
            f"set tag.student and tag.form to what it serves"
        )
    max_batch = identity.get("max_batch")
    if isinstance(max_batch, int) and params.batch_size > max_batch:
        raise WrongModel(
            f"tag: {params.url} takes at most {max_batch} texts a request (its --max-batch); set tag.batch_size "
            f"to at most {max_batch}"
        )


def ask_served(todo: Todo, chunks: Iterator[dict[str, str]], params: TagParams, version: str, model_dir: Path) -> dict:
    """POST every headline the store lacks to the served student, batch_size a request (llm_label's client:
    retries, backoff, adaptive requests in flight, giving up on a URL that stays down for tag.give_up_after_s);
    each answer goes to the store as it arrives. The server must say it serves tag.student's folder (GET /health
    before the first request, the X-Model-Version header of every reply, where it gives them). Batches that still
    fail stop the stage after the others are cached, so the next run asks only for those."""
    url = params.url
    assert url is not None  # main asks a served student only when params name its URL
    token = os.environ.get(params.token_env) if params.token_env else None
    settings = ClientSettings(
        base_url=url,
        concurrency=params.concurrency,
        timeout_s=params.timeout_s,
        max_attempts=params.max_attempts,
        token=token,
        give_up_after_s=params.give_up_after_s,
    )
    identity = served_identity(url, token, min(params.timeout_s, 10))
    try:
        check_identity(identity, params, version, model_dir)
    except WrongModel as error:
        raise EndpointError(str(error)) from None
    if "model_version" not in identity:
        log.warning(
            "tag: %s/health names no model_version: what it serves is checked only by reply headers, if it sends "
            "them; its answers are cached under %s's version %s",
            url.rstrip("/"),
            model_dir,
            version,
        )

    def same_model(headers: Mapping[str, str]) -> None:
        if headers.get(VERSION_HEADER, version) != version:
            served = {"model_version": headers[VERSION_HEADER], "student": headers.get(STUDENT_HEADER)}
            check_identity(served, params, version, model_dir)

    run: dict[str, Any] = {"headlines_computed": 0}

    async def answer(session, gate, stats, chunk: dict[str, str]) -> None:
        texts = list(chunk.values())
        body = {"inputs": texts, "parameters": {"batch_size": params.batch_size}}  # the batches in-process uses
        reply = await ask(session, url, body, settings, stats, gate, served_reply(texts), same_model)
        share = {name: reply[name] for name in RUN_FIELDS if name in reply}
        for (key, text), spans in zip(chunk.items(), reply["spans"]):
            put_spans(todo.cache, key, version, text, spans, **share)
        run["headlines_computed"] += len(texts)
        todo.progress(len(texts))

    started = time.perf_counter()
    try:
        stats, failed = asyncio.run(ask_each(chunks, settings, answer, lambda chunk: next(iter(chunk))))
    except EndpointDown as error:
        raise EndpointError(
            f"tag: {error} (tag.give_up_after_s); every answered batch is cached, so `dvc repro` asks only for the rest"
        ) from None
    except WrongModel as error:
        raise EndpointError(str(error)) from None
    run |= {
        "seconds": time.perf_counter() - started,
        "requests": stats.calls,
        "retries": stats.retries,
        "concurrency": stats.limit_summary,
    }
    if failed:
        kinds = dict(sorted(Counter(failed.values()).items()))
        hint = (
            "; the server refused the batch size (413): lower tag.batch_size to its --max-batch"
            if "http_413" in kinds
            else ""
        )
        raise EndpointError(
            f"tag: {len(failed)} batch(es) failed at {params.url}: {kinds} (after up to {params.max_attempts} "
            f"attempts each){hint}; every answered batch is cached, so `dvc repro` asks only for these"
        )
    return run


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
    if (
        params.url is None
    ):  # what the export wrote, or tag would cache a damaged folder's answers (a server checks its own)
        verify_folder(model_dir)
    version = model_version(model_dir, decode)
    total = pq.ParquetFile(args.headlines).metadata.num_rows
    via = "in_process" if params.url is None else "served"

    with AnswerCache(args.cache_dir) as cache:
        if seeded := seed(cache, args.answers):
            log.info("tag: %d answer(s) of %s added to the store %s", seeded, args.answers, args.cache_dir)
        with tqdm(total=total, desc="tag", unit="headline") as progress:
            todo = Todo(cache, version, via, progress.update)
            chunks = todo.chunks(headline_batches(args.headlines, params.batch_size), params.batch_size)
            if params.url is None:
                predict = STUDENTS[params.student].load(model_dir, decode=decode)
                run = predict_missing(predict, todo, chunks, params.batch_size)
            else:
                run = ask_served(todo, chunks, params, version, model_dir)
        if todo.unreadable:
            log.warning("tag: %d cached answer(s) could not be read back as spans; asked again", todo.unreadable)

        used = array("Q")  # where each headline's answer lies in the store: 8 bytes a headline
        carried = carried_fields(args.headlines)
        written = headline_batches(args.headlines, params.batch_size, carried)
        counts = write_tagged(
            args.out, written, stored_spans(cache, version, via, used), canonical, model, version, carried
        )
        publish(cache, used, args.answers)  # the output `dvc push` shares
    per_s = run["headlines_computed"] / run["seconds"] if run["seconds"] else None
    metrics = {**counts, "model": model, "model_version": version, "via": via, "batch_size": params.batch_size}
    # this run's: what the cache already held, speed and price of its predictions (null when every batch came from
    # the cache), the served student's requests; machine-dependent, so in the speed report (git-ignored, no DVC output)
    speed = {
        "headlines_cached": todo.headlines - run["headlines_computed"],
        "cache_entries_unreadable": todo.unreadable,
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
