"""The teacher's cached answers as label rows: each answer parsed and aligned to spans once, self-consistency
samples voted on, rows built into Arrow tables a batch at a time."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass

import polars as pl
import pyarrow as pa

from stages.core.schema import SPANS
from stages.core.spans import as_spans, locate, longest_first
from stages.http.answer_cache import AnswerCache
from stages.teacher.request import RequestSpec, parse_answer


@dataclass(frozen=True)
class Reading:
    """One answer parsed and aligned, once: its label row and its self-consistency vote both read it."""

    parsed: dict  # parse_answer: valid, error, mentions, names
    found: dict[str, list[tuple[int, int]]]  # where each mention occurs (nowhere: hallucinated)
    offsets: list[tuple[int, int]]  # the answer's spans, overlaps resolved

    @property
    def hallucinated(self) -> list[str]:
        return [m for m in self.parsed["mentions"] if not self.found[m]]


def read_answer(text: str, answer: dict, occurrences: str) -> Reading:
    parsed = parse_answer(answer["content"], answer.get("error"))
    found = locate(text, parsed["mentions"], occurrences)
    return Reading(parsed, found, longest_first(o for hits in found.values() for o in hits))


def failed_row(failure: str | None) -> dict:
    return {
        "valid": False,
        "error": f"request_failed: {failure or 'not asked'}",
        "raw_answer": None,
        "finish_reason": None,
        "mentions": [],
        "names": [],
        "teacher_spans": [],
        "hallucinated": [],
        "agreement": None,
    }


def label_row(text: str, answer: dict | None, failure: str | None, occurrences: str) -> dict:
    """One output row from a cached answer (or the failure that prevented one). `mentions` and `names` are
    the pairs whose mention is in the headline; `hallucinated` the mentions that are not."""
    if answer is None:
        return failed_row(failure)
    reading = read_answer(text, answer, occurrences)
    pairs = [(m, n) for m, n in zip(reading.parsed["mentions"], reading.parsed["names"]) if reading.found[m]]
    return {
        "valid": reading.parsed["valid"],
        "error": reading.parsed["error"],
        "raw_answer": answer["content"],
        "finish_reason": answer.get("finish_reason"),
        "mentions": [m for m, _ in pairs],
        "names": [n for _, n in pairs],
        "teacher_spans": as_spans(text, reading.offsets),
        "hallucinated": reading.hallucinated,
        "agreement": None,
    }


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
    return {
        "valid": sum(r.parsed["valid"] for r in readings) > len(readings) / 2,
        "error": next((r.parsed["error"] for r in readings if r.parsed["error"]), None),
        "raw_answer": json.dumps([a["content"] for a in answers], ensure_ascii=False),
        "finish_reason": Counter(a.get("finish_reason") for a in answers).most_common(1)[0][0],
        "mentions": list(pairs),
        "names": list(pairs.values()),
        "teacher_spans": as_spans(text, sorted(majority)),
        "hallucinated": sorted({m for r in readings for m in r.hallucinated}),
        "agreement": agreeing / len(readings),
    }


LABEL_SCHEMA = {
    "valid": pl.Boolean,
    "error": pl.String,
    "raw_answer": pl.String,
    "finish_reason": pl.String,
    "mentions": pl.List(pl.String),
    "names": pl.List(pl.String),
    "teacher_spans": SPANS,
    "hallucinated": pl.List(pl.String),
    "agreement": pl.Float64,
}
# Arrow builds nested columns from Python rows in C, several times faster than polars' row constructor.
LABEL_ARROW_SCHEMA = pl.DataFrame(schema=LABEL_SCHEMA).to_arrow().schema


def label_table(
    headlines: pl.DataFrame,
    specs: list[RequestSpec],
    cache: AnswerCache,
    failures: dict[str, str],
    occurrences: str,
    keys: dict[str, list[str]] | None = None,
) -> pl.DataFrame:
    """The headlines with their label columns; `keys`: each text's cache keys, one per spec, when known already
    (computing them takes most of the time)."""
    keys = keys or {text: [s.cache_key(text) for s in specs] for text in headlines["text"]}
    rows = [
        consensus_row(text, [cache.get(key) for key in keys[text]], failures.get(text), occurrences)
        for text in headlines["text"]
    ]
    labels = pl.from_arrow(pa.Table.from_pylist(rows, schema=LABEL_ARROW_SCHEMA))
    return pl.concat([headlines, labels], how="horizontal")


def label_figures(labels: pl.DataFrame) -> pl.DataFrame:
    """The per-headline figures the label metrics count, a few bytes a headline: what is kept of the whole feed
    while its rows are written batch by batch."""
    return labels.select(
        "valid",
        pl.col("raw_answer").is_not_null().alias("answered"),
        pl.col("error").str.extract(r"^(\w+)").alias("error_kind"),
        "finish_reason",
        pl.col("teacher_spans").list.len().alias("spans"),
        pl.col("hallucinated").list.len().alias("hallucinated"),
        "agreement",
    )
