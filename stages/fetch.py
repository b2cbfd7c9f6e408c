"""fetch: read the headline source named in params into one normalised, deduplicated Parquet table.

Output columns: id (stable hash of date + text), text, date, source.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import polars as pl

from stages.common.io import log, setup_logging, write_json, write_table
from stages.common.params import load_params, require

OUT = Path("data/fetched/headlines.parquet")
METRICS = Path("metrics/fetch.json")


def headline_id(date: str, text: str) -> str:
    return hashlib.sha256(f"{date}\t{text}".encode()).hexdigest()[:16]


def read_source(path: Path) -> pl.DataFrame:
    """Every column as text, so that parsing errors are ours to report with a row number."""
    if not path.exists():
        raise SystemExit(f"{path}: source file not found (params.yaml fetch.path)")
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            return pl.read_csv(path, infer_schema=False)
        if suffix in (".jsonl", ".ndjson"):
            return pl.read_ndjson(path).cast(pl.String)
        if suffix == ".parquet":
            return pl.read_parquet(path).cast(pl.String)
    except (pl.exceptions.ComputeError, UnicodeDecodeError) as error:
        raise SystemExit(f"{path}: cannot read: {error}") from error
    raise SystemExit(f"{path}: unsupported file type '{suffix}' (csv, jsonl, parquet)")


def normalise(raw: pl.DataFrame, columns: dict[str, str], source: str, where: str,
              on_bad_row: str = "error") -> tuple[pl.DataFrame, dict]:
    """Map columns, check every row, drop exact duplicates. Returns the table and its counts."""
    missing = [c for c in columns.values() if c not in raw.columns]
    if missing:
        raise SystemExit(f"{where}: missing column(s) {missing}; the file has {raw.columns} "
                         f"(map them with params.yaml fetch.columns)")
    frame = raw.select(text=pl.col(columns["text"]).str.strip_chars(), date_raw=pl.col(columns["date"]))
    frame = frame.with_columns(date=pl.col("date_raw").str.slice(0, 10).str.to_date("%Y-%m-%d", strict=False),
                               row=pl.int_range(2, pl.len() + 2))  # row 1 is the header line
    problems = frame.filter(pl.col("date").is_null() | pl.col("text").is_null() | (pl.col("text") == ""))
    if problems.height and on_bad_row == "error":
        first = problems.row(0, named=True)
        what = "empty text" if not first["text"] else f"unparsable date {first['date_raw']!r}"
        raise SystemExit(f"{where}: row {first['row']}: {what} ({problems.height} bad row(s) in all; "
                         f"set fetch.on_bad_row: drop to skip them)")
    good = frame.join(problems.select("row"), on="row", how="anti")
    deduped = good.unique(subset=["date", "text"], keep="first", maintain_order=True)
    table = deduped.select(
        id=pl.struct("date", "text").map_elements(lambda r: headline_id(str(r["date"]), r["text"]),
                                                  return_dtype=pl.String),
        text="text", date="date", source=pl.lit(source))
    counts = {"rows_in": raw.height, "bad_rows_dropped": problems.height,
              "duplicates_dropped": good.height - deduped.height, "rows_out": table.height}
    if table.height:
        counts |= {"date_min": str(table["date"].min()), "date_max": str(table["date"].max())}
    return table, counts


def main() -> None:
    setup_logging()
    params = load_params("fetch")
    path = Path(require(params, "path", "fetch"))
    table, counts = normalise(read_source(path), require(params, "columns", "fetch"),
                              source=require(params, "source", "fetch"), where=str(path),
                              on_bad_row=params.get("on_bad_row", "error"))
    if not table.height:
        raise SystemExit(f"{path}: no headlines left after cleaning")
    write_table(table, OUT)
    write_json(METRICS, counts)
    log.info("fetch: %d rows in, %d out (%d duplicates, %d bad rows dropped), dates %s..%s -> %s",
             counts["rows_in"], counts["rows_out"], counts["duplicates_dropped"], counts["bad_rows_dropped"],
             counts.get("date_min"), counts.get("date_max"), OUT)


if __name__ == "__main__":
    main()
