"""The record schema shared by every stage: a headline with character spans of company mentions."""
from __future__ import annotations

import polars as pl

COMPANY = "company"

SPAN = pl.Struct({"start": pl.Int32, "end": pl.Int32, "text": pl.String})
SPANS = pl.List(SPAN)

# Columns every headline table carries from fetch onwards.
HEADLINE_COLUMNS = {"id": pl.String, "text": pl.String, "date": pl.Date, "source": pl.String}


def span_tuples(spans: list[dict] | None) -> set[tuple[int, int]]:
    return {(s["start"], s["end"]) for s in spans or []}
