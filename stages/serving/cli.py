"""headline-ner: the project's command line, installed with it (pyproject.toml [project.scripts]; `make install`).

    headline-ner tag MODEL_DIR_OR_URL [FILE.csv | FILE.jsonl | -] [--text "one headline"] [--column text]
                     [--out FILE.jsonl | FILE.csv] [--batch-size 32] [--threshold 0.5] [--token-env HF_TOKEN]

`tag` finds the companies in headlines with a student: a model folder (any saved or exported student, run in this
process by the endpoint handler over the student's own load: the predict `evaluate` scores) or the URL of a served
one (`make serve`, scripts/serve.py, or an Inference Endpoint: POST {"inputs": [...], "parameters": {...}}, the
token-classification answer). Headlines come from a CSV file (its --column, `text` by default), a JSONL file (that
key of each object, or lines that are JSON strings), stdin (`-`: one headline a line) or --text. Each input record
gets `spans` ([{"start", "end", "text", "score"}], character offsets) and is printed as a JSON line on stdout, or
written to --out (JSON lines; CSV with `spans` as JSON text when the name ends in .csv). Progress and the log go to
stderr, so stdout is only the records.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tqdm import tqdm

from stages.core.cli import run_stage, setup_logging
from stages.core.errors import EndpointError, InputError, ModelError
from stages.core.io import write_csv

log = logging.getLogger("headline_ner.cli")

Tagger = Callable[[list[str]], list[list[dict]]]  # texts -> token-classification entities per text
MAX_BATCH = 64  # the handler's and scripts/serve.py's most texts per request (serving.handler.MAX_TEXTS)
RETRIED = (429, 502, 503, 504)  # a busy or waking endpoint: asked again after a pause


def read_records(source: str | None, text: str | None, column: str) -> tuple[list[dict], str]:
    """The input records (each a dict holding its headline under `column`) and where they came from."""
    if text is not None:
        if source is not None:
            raise InputError(f"give a file or --text, not both (got {source} and --text)")
        return [{column: text}], "--text"
    if source is None:
        raise InputError("nothing to tag: give a CSV or JSONL file, - for stdin (one headline a line), or --text")
    if source == "-":
        return [{column: line.rstrip("\r\n")} for line in sys.stdin if line.strip()], "stdin"
    path = Path(source)
    if not path.is_file():
        raise InputError(f"{path}: not found")
    if path.suffix.lower() == ".csv":
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            if column not in (reader.fieldnames or []):
                raise InputError(
                    f"{path}: no column {column!r}; it has {reader.fieldnames} (name the headline's with --column)"
                )
            return [dict(row) for row in reader], str(path)
    if path.suffix.lower() in (".jsonl", ".ndjson"):
        records = []
        with open(path, encoding="utf-8") as f:
            for number, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    value = json.loads(line)
                except json.JSONDecodeError as error:
                    raise InputError(f"{path}:{number}: not JSON ({error.msg})") from None
                record = {column: value} if isinstance(value, str) else value
                if not isinstance(record, dict) or not isinstance(record.get(column), str):
                    raise InputError(
                        f"{path}:{number}: expected a JSON string or an object with a string {column!r} "
                        f"(choose the key with --column)"
                    )
                records.append(record)
        return records, str(path)
    raise InputError(f"{path}: expected a .csv or .jsonl file (or - for stdin, one headline a line)")


def local_tagger(model_dir: Path, parameters: dict) -> Tagger:
    """A saved or exported student folder, in this process, behind the endpoint handler (the served contract)."""
    from stages.serving.handler import BadRequest, EndpointHandler  # here: loading a student imports torch & co.

    if not model_dir.is_dir():
        raise ModelError(f"{model_dir}: no such model folder (a saved or exported student, or an http(s) URL)")
    handler = EndpointHandler(model_dir, max_texts=MAX_BATCH, max_chars=sys.maxsize)

    def tag(texts: list[str]) -> list[list[dict]]:
        try:
            return handler({"inputs": texts, "parameters": parameters})
        except BadRequest as error:
            raise InputError(f"headline-ner tag: {error}") from None

    return tag


def checked_reply(reply: Any, texts: list[str], url: str) -> list[list[dict]]:
    """The served answer, if it is one list of entities with in-range offsets and a score per text."""
    if not isinstance(reply, list) or len(reply) != len(texts) or not all(isinstance(e, list) for e in reply):
        raise EndpointError(f"{url}: expected a list of {len(texts)} lists of entities, got {str(reply)[:120]}")
    for text, entities in zip(texts, reply):
        for e in entities:
            start, end, score = (e.get(k) if isinstance(e, dict) else None for k in ("start", "end", "score"))
            if not (isinstance(start, int) and isinstance(end, int) and 0 <= start < end <= len(text)):
                raise EndpointError(f"{url}: entity {str(e)[:120]} is no span of {text[:60]!r}")
            if not isinstance(score, (int, float)):
                raise EndpointError(f"{url}: entity {str(e)[:120]} has no score")
    return reply


def served_tagger(url: str, parameters: dict, token: str | None, timeout_s: float, attempts: int = 4) -> Tagger:
    """A served student (scripts/serve.py or an Inference Endpoint): one POST per batch; a busy or waking endpoint
    (429, 502-504) and a dropped connection are asked again after a pause, up to `attempts` times."""
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})}

    def tag(texts: list[str]) -> list[list[dict]]:
        body = json.dumps({"inputs": texts, "parameters": parameters}).encode()
        for attempt in range(1, attempts + 1):
            request = urllib.request.Request(url, data=body, headers=headers, method="POST")
            try:
                with urllib.request.urlopen(request, timeout=timeout_s) as response:
                    raw = response.read()
                break
            except urllib.error.HTTPError as error:
                if error.code not in RETRIED or attempt == attempts:
                    detail = error.read()[:300].decode("utf-8", "replace")
                    raise EndpointError(f"{url} answered HTTP {error.code}: {detail}") from None
                why = f"HTTP {error.code}"
            except (urllib.error.URLError, TimeoutError, ConnectionError) as error:
                why = str(getattr(error, "reason", error))
                if attempt == attempts:
                    raise EndpointError(f"cannot reach {url} ({why}) after {attempts} attempts") from None
            log.warning(
                "headline-ner tag: %s from %s; asking again (attempt %d of %d)", why, url, attempt + 1, attempts
            )
            time.sleep(min(2 ** (attempt - 1), 10))
        try:
            reply = json.loads(raw)
        except ValueError:
            raise EndpointError(f"{url}: the answer is not JSON: {raw[:120]!r}") from None
        return checked_reply(reply, texts, url)

    return tag


def spans(entities: list[dict], text: str) -> list[dict]:
    return [
        {
            "start": e["start"],
            "end": e["end"],
            "text": text[e["start"] : e["end"]],
            "score": round(float(e["score"]), 4),
        }
        for e in entities
    ]


def tag_records(records: list[dict], column: str, tagger: Tagger, batch_size: int, desc: str) -> list[dict]:
    """Each record with its headline's spans, tagged batch_size headlines at a time (progress on stderr)."""
    tagged = []
    with tqdm(total=len(records), desc=desc, unit="headline", file=sys.stderr) as progress:
        for first in range(0, len(records), batch_size):
            batch = records[first : first + batch_size]
            texts = [r[column] or "" for r in batch]
            for record, text, entities in zip(batch, texts, tagger(texts)):
                tagged.append({**record, "spans": spans(entities, text)})
            progress.update(len(batch))
    return tagged


def write_records(records: list[dict], out: Path | None) -> None:
    """JSON lines on stdout or into out; CSV (spans as JSON text) when out ends in .csv."""
    if out is not None and out.suffix.lower() == ".csv":
        fields = list(dict.fromkeys(key for r in records for key in r if key != "spans")) + ["spans"]
        write_csv(out, [{**r, "spans": json.dumps(r["spans"], ensure_ascii=False)} for r in records], fields)
        return
    lines = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    if out is None:
        sys.stdout.write(lines)
        sys.stdout.flush()
    else:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(lines, encoding="utf-8")


def tag_command(args: argparse.Namespace) -> None:
    records, origin = read_records(args.file, args.text, args.column)
    parameters: dict[str, Any] = {"batch_size": args.batch_size}
    if args.threshold is not None:
        parameters["threshold"] = args.threshold
    served = args.model.startswith(("http://", "https://"))
    if served:
        token = os.environ.get(args.token_env) if args.token_env else None
        tagger = served_tagger(args.model, parameters, token, args.timeout_s)
    else:
        tagger = local_tagger(Path(args.model), parameters)
    where = f"served at {args.model}" if served else f"{args.model}, in this process"
    log.info("headline-ner tag: %d headlines from %s, by the student %s", len(records), origin, where)
    tagged = tag_records(records, args.column, tagger, args.batch_size, "headline-ner tag")
    write_records(tagged, args.out)
    found = [len(r["spans"]) for r in tagged]
    log.info(
        "headline-ner tag: %d headlines, %d with a company, %d spans -> %s",
        len(tagged),
        sum(1 for n in found if n),
        sum(found),
        args.out or "stdout",
    )


def parser() -> argparse.ArgumentParser:
    main_parser = argparse.ArgumentParser(prog="headline-ner", description=__doc__.splitlines()[0])
    commands = main_parser.add_subparsers(dest="command", required=True)
    tag = commands.add_parser(
        "tag",
        help="the companies in headlines, by a student's folder or URL",
        description="Tag headlines with a saved or exported student (a folder, in this process) or a served one "
        "(its URL); JSON lines out, progress on stderr.",
    )
    tag.add_argument("model", metavar="MODEL_DIR_OR_URL", help="e.g. models/gliner_export or http://127.0.0.1:8080")
    tag.add_argument(
        "file", nargs="?", metavar="FILE", help="a .csv or .jsonl file, or - for stdin (a headline a line)"
    )
    tag.add_argument("--text", help="one headline to tag, instead of a file")
    tag.add_argument("--column", default="text", help="the headline column (CSV) or key (JSONL); default: text")
    tag.add_argument("--out", type=Path, help="write here (.jsonl, or .csv) instead of printing JSON lines")
    tag.add_argument("--batch-size", type=int, default=32, choices=range(1, MAX_BATCH + 1), metavar=f"1..{MAX_BATCH}")
    tag.add_argument("--threshold", type=float, help="keep spans scoring at least this (the model's own by default)")
    tag.add_argument("--token-env", default="HF_TOKEN", help="env var with a bearer token for a URL (default HF_TOKEN)")
    tag.add_argument("--timeout-s", type=float, default=120.0, help="seconds to wait for a served answer")
    return main_parser


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    setup_logging()
    run_stage(lambda: tag_command(args))


if __name__ == "__main__":
    main()
