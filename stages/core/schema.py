"""The record schema shared by every stage: a headline with character spans of company mentions.

Spans and records are TypedDicts: they cross the table boundary as the dicts polars reads and writes (to_dicts,
iter_rows), so typing them costs no conversion per row at the feed's scale, and the type checker holds every
stage to the one shape written here.
"""

from __future__ import annotations

import datetime
import hashlib
from collections.abc import Iterable, Mapping
from typing import Any, NotRequired, TypedDict

import polars as pl

COMPANY = "company"
SPLITS = ("train", "valid", "test")  # the date splits, in pipeline order


class Span(TypedDict):
    """A company mention: characters [start, end) of the headline, and their text."""

    start: int
    end: int
    text: str


class ScoredSpan(Span):
    score: float  # the model's confidence, where a model predicted it


class Record(TypedDict):
    """A headline with the one label it stands for (labels/records.py builds them from a reviewed table)."""

    id: str
    text: str
    spans: list[Span]
    label_source: NotRequired[str]  # human | llm | none
    date: NotRequired[datetime.date]  # where a scorer needs it (F1 per year)


SPAN = pl.Struct({"start": pl.Int32, "end": pl.Int32, "text": pl.String})  # Span as a table column
SPANS = pl.List(SPAN)

# Columns every headline table carries from fetch onwards.
HEADLINE_COLUMNS = {"id": pl.String, "text": pl.String, "date": pl.Date, "source": pl.String}


def span_tuples(spans: Iterable[Mapping[str, Any]] | None) -> set[tuple[int, int]]:
    """(start, end) of each span: Spans, or a model's predictions (which also carry a score)."""
    return {(s["start"], s["end"]) for s in spans or []}


def seeded_rank(seed: int, record_id: str) -> str:
    """A record's place in a seeded order that does not depend on the other records (so a subset taken
    from the front stays stable when records are added)."""
    return hashlib.sha256(f"{seed}:{record_id}".encode()).hexdigest()


def seeded_share(ids: list[str], fraction: float, seed: int) -> set[str]:
    """A seeded share of the ids (nested: a smaller fraction picks a subset of a larger one)."""
    ranked = sorted(ids, key=lambda i: seeded_rank(seed, i))
    return set(ranked[: round(fraction * len(ranked))])
