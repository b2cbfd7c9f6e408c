"""The record schema shared by every stage: a headline with character spans of company mentions."""

from __future__ import annotations

import hashlib

import polars as pl

COMPANY = "company"
SPLITS = ("train", "valid", "test")  # the date splits, in pipeline order

SPAN = pl.Struct({"start": pl.Int32, "end": pl.Int32, "text": pl.String})
SPANS = pl.List(SPAN)

# Columns every headline table carries from fetch onwards.
HEADLINE_COLUMNS = {"id": pl.String, "text": pl.String, "date": pl.Date, "source": pl.String}


def span_tuples(spans: list[dict] | None) -> set[tuple[int, int]]:
    return {(s["start"], s["end"]) for s in spans or []}


def seeded_rank(seed: int, record_id: str) -> str:
    """A record's place in a seeded order that does not depend on the other records (so a subset taken
    from the front stays stable when records are added)."""
    return hashlib.sha256(f"{seed}:{record_id}".encode()).hexdigest()
