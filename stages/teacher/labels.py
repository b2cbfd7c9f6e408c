"""The teacher's cached answers as label rows: each answer parsed and aligned to spans once, self-consistency
samples voted on, rows built into Arrow tables a batch at a time."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field, fields
from typing import Any, cast

import polars as pl
import pyarrow as pa

from stages.core.schema import SPANS, Span
from stages.core.spans import as_spans, locate, longest_first
from stages.http.answer_cache import AnswerCache
from stages.teacher.replies import ParsedAnswer, parse_answer
from stages.teacher.request import RequestSpec


@dataclass(frozen=True)
class Reading:
    """One answer parsed and aligned, once: its label row and its self-consistency vote both read it."""

    parsed: ParsedAnswer
    found: dict[str, list[tuple[int, int]]]  # where each mention occurs (nowhere: hallucinated)
    offsets: list[tuple[int, int]]  # the answer's spans, overlaps resolved

    @property
    def hallucinated(self) -> list[str]:
        return [m for m in self.parsed.mentions if not self.found[m]]


def read_answer(text: str, answer: dict, occurrences: str) -> Reading:
    parsed = parse_answer(answer["content"], answer.get("error"))
    found = locate(text, parsed.mentions, occurrences)
    return Reading(parsed, found, longest_first(o for hits in found.values() for o in hits))


def column(dtype: pl.DataType | type[pl.DataType]) -> Any:
    """A LabelRow field, with the polars type of its column."""
    return field(metadata={"dtype": dtype})


@dataclass(frozen=True)
class LabelRow:
    """The teacher's label columns of one headline: what llm_label writes beside the headline's own columns."""

    valid: bool = column(pl.Boolean)  # the teacher answered in form
    error: str | None = column(pl.String)
    raw_answer: str | None = column(pl.String)  # the answer's text (JSON list of them under self-consistency)
    finish_reason: str | None = column(pl.String)
    mentions: list[str] = column(pl.List(pl.String))  # the pairs whose mention is in the headline
    names: list[str] = column(pl.List(pl.String))
    teacher_spans: list[Span] = column(SPANS)
    hallucinated: list[str] = column(pl.List(pl.String))  # mentions that are not in the headline
    agreement: float | None = column(pl.Float64)  # share of self-consistency samples that agree with the vote

    @classmethod
    def failed(cls, failure: str | None) -> LabelRow:
        return cls(False, f"request_failed: {failure or 'not asked'}", None, None, [], [], [], [], None)


LABEL_SCHEMA = {f.name: f.metadata["dtype"] for f in fields(LabelRow)}
# Arrow builds nested columns from Python rows in C, several times faster than polars' row constructor.
LABEL_ARROW_SCHEMA = pl.DataFrame(schema=LABEL_SCHEMA).to_arrow().schema


def label_row(text: str, answer: dict | None, failure: str | None, occurrences: str) -> LabelRow:
    """One headline's label from a cached answer (or the failure that prevented one)."""
    if answer is None:
        return LabelRow.failed(failure)
    reading = read_answer(text, answer, occurrences)
    pairs = [(m, n) for m, n in zip(reading.parsed.mentions, reading.parsed.names) if reading.found[m]]
    return LabelRow(
        valid=reading.parsed.valid,
        error=reading.parsed.error,
        raw_answer=answer["content"],
        finish_reason=answer.get("finish_reason"),
        mentions=[m for m, _ in pairs],
        names=[n for _, n in pairs],
        teacher_spans=as_spans(text, reading.offsets),
        hallucinated=reading.hallucinated,
        agreement=None,
    )


def consensus_row(text: str, answers: list[dict | None], failure: str | None, occurrences: str) -> LabelRow:
    """Self-consistency: keep the spans that more than half of the samples agree on."""
    if len(answers) == 1:
        return label_row(text, answers[0], failure, occurrences)
    given = [a for a in answers if a is not None]
    if len(given) < len(answers):
        return LabelRow.failed(failure)
    readings = [read_answer(text, a, occurrences) for a in given]
    votes = Counter(span for r in readings for span in r.offsets)
    majority = {span for span, count in votes.items() if count > len(readings) / 2}
    pairs: dict[str, str] = {}
    for r in readings:
        for mention, name in zip(r.parsed.mentions, r.parsed.names):
            if mention not in pairs and any(span in majority for span in longest_first(r.found[mention])):
                pairs[mention] = name
    agreeing = sum(set(r.offsets) == majority for r in readings)
    return LabelRow(
        valid=sum(r.parsed.valid for r in readings) > len(readings) / 2,
        error=next((r.parsed.error for r in readings if r.parsed.error), None),
        raw_answer=json.dumps([a["content"] for a in given], ensure_ascii=False),
        finish_reason=Counter(a.get("finish_reason") for a in given).most_common(1)[0][0],
        mentions=list(pairs),
        names=list(pairs.values()),
        teacher_spans=as_spans(text, sorted(majority)),
        hallucinated=sorted({m for r in readings for m in r.hallucinated}),
        agreement=agreeing / len(readings),
    )


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
        vars(consensus_row(text, [cache.get(key) for key in keys[text]], failures.get(text), occurrences))
        for text in headlines["text"]
    ]
    labels = cast(pl.DataFrame, pl.from_arrow(pa.Table.from_pylist(rows, schema=LABEL_ARROW_SCHEMA)))
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
