"""fetch: read the headline source named in params into one normalised, deduplicated Parquet table.

Sources (params `fetch.kind`): `file` (CSV / JSONL / Parquet, the embedded sample by default) or
`hf_dataset` (a Hugging Face dataset at a pinned revision, streamed, e.g. FNSPID). Both go through the
same column mapping, row filters, checks and dedup. Output columns: id (stable hash of date + text),
text, date, source, plus any `keep_columns`.
"""
from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path

import polars as pl
from tqdm import tqdm

from stages.common.io import log, setup_logging, write_json, write_table
from stages.common.params import load_params, require

OUT = Path("data/fetched/headlines.parquet")
METRICS = Path("metrics/fetch.json")
ROW = "__row"  # where each row was in the source, for error messages
PROBLEMS = {"empty_text": "empty text", "undecodable_bytes": "undecodable bytes in text",
            "unparsable_date": "unparsable date"}


def headline_id(date: str, text: str) -> str:
    return hashlib.sha256(f"{date}\t{text}".encode()).hexdigest()[:16]


def read_file(path: Path) -> pl.DataFrame:
    """Every column as text (so that parsing problems are ours to report), plus the source row number."""
    if not path.exists():
        raise SystemExit(f"{path}: source file not found (params.yaml fetch.path)")
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":  # lossy decoding turns bad bytes into U+FFFD, which the checks report by row
            frame, first_row = pl.read_csv(path, infer_schema=False, encoding="utf8-lossy"), 2
        elif suffix in (".jsonl", ".ndjson"):
            frame, first_row = pl.read_ndjson(path).cast(pl.String), 1
        elif suffix == ".parquet":
            frame, first_row = pl.read_parquet(path).cast(pl.String), 0
        else:
            raise SystemExit(f"{path}: unsupported file type '{suffix}' (csv, jsonl, parquet)")
    except (pl.exceptions.PolarsError, UnicodeDecodeError) as error:
        raise SystemExit(f"{path}: cannot read: {error}") from error
    return frame.with_columns(pl.int_range(first_row, pl.len() + first_row).alias(ROW))


def read_hf_dataset(spec: dict, columns: list[str], batch_rows: int = 50_000) -> pl.DataFrame:
    """Stream a Hugging Face dataset (a hub id at a pinned revision, or a local dataset directory)."""
    from datasets import load_dataset

    options = {k: spec[k] for k in ("revision", "data_files", "name") if spec.get(k)}
    try:
        stream = load_dataset(spec["path"], split=spec.get("split", "train"), streaming=True, **options)
    except Exception as error:  # datasets raises many types for "not reachable / not found"
        raise SystemExit(f"fetch.hf_dataset {spec['path']!r}: cannot open: {error.__class__.__name__}: {error}") from error
    missing = [c for c in columns if c not in (stream.column_names or columns)]
    if missing:
        raise SystemExit(f"{spec['path']}: missing column(s) {missing}; it has {stream.column_names}")
    frames, seen = [], 0
    for batch in tqdm(stream.select_columns(columns).iter(batch_size=batch_rows), desc="fetch", unit="batch"):
        frame = pl.DataFrame(batch).cast(pl.String)
        frames.append(frame.with_columns(pl.int_range(seen, seen + frame.height).alias(ROW)))
        seen += frame.height
    return pl.concat(frames) if frames else pl.DataFrame(schema={**{c: pl.String for c in columns}, ROW: pl.Int64})


def filter_expression(rule: dict) -> pl.Expr:
    """One row filter from params: {column, equals | contains | in: value}."""
    column = pl.col(rule["column"])
    if "equals" in rule:
        return column == str(rule["equals"])
    if "contains" in rule:
        return column.str.contains(str(rule["contains"]), literal=True)
    if "in" in rule:
        return column.is_in([str(v) for v in rule["in"]])
    raise SystemExit(f"params.yaml: fetch.filters entry {rule} needs one of equals / contains / in")


def normalise(raw: pl.DataFrame, params: dict, where: str) -> tuple[pl.DataFrame, dict]:
    """Filter, map columns, check every row, drop exact duplicates. Returns the table and its counts."""
    columns, keep = params["columns"], params.get("keep_columns") or []
    missing = [c for c in [*columns.values(), *keep] if c not in raw.columns]
    if missing:
        raise SystemExit(f"{where}: missing column(s) {missing}; the source has "
                         f"{[c for c in raw.columns if c != ROW]} (map them with params.yaml fetch.columns)")
    if ROW not in raw.columns:
        raw = raw.with_row_index(ROW)
    filters = params.get("filters") or []
    kept = raw.filter(pl.all_horizontal(filter_expression(f) for f in filters)) if filters else raw
    frame = kept.select(pl.col(columns["text"]).str.strip_chars().alias("text"),
                        pl.col(columns["date"]).alias("date_raw"), pl.col(ROW).alias("row"), *keep)
    frame = frame.with_columns(date=pl.col("date_raw").str.slice(0, 10).str.to_date("%Y-%m-%d", strict=False))
    problem = (pl.when(pl.col("text").is_null() | (pl.col("text") == "")).then(pl.lit("empty_text"))
               .when(pl.col("text").str.contains("\ufffd", literal=True)).then(pl.lit("undecodable_bytes"))
               .when(pl.col("date").is_null()).then(pl.lit("unparsable_date")))
    frame = frame.with_columns(problem=problem)
    bad = frame.filter(pl.col("problem").is_not_null())
    if bad.height and params.get("on_bad_row", "error") == "error":
        first = bad.row(0, named=True)
        detail = f" {first['date_raw']!r}" if first["problem"] == "unparsable_date" else ""
        raise SystemExit(f"{where}: row {first['row']}: {PROBLEMS[first['problem']]}{detail} ({bad.height} bad "
                         f"row(s) in all; set fetch.on_bad_row: drop to skip and count them)")
    good = frame.filter(pl.col("problem").is_null())
    start, end = (params.get("date_range") or {}).get("start"), (params.get("date_range") or {}).get("end")
    in_range = good.filter(pl.col("date").is_between(dt.date.fromisoformat(str(start or "0001-01-01")),
                                                     dt.date.fromisoformat(str(end or "9999-12-31"))))
    deduped = in_range.unique(subset=["date", "text"], keep="first", maintain_order=True)
    ids = pl.struct("date", "text").map_elements(lambda r: headline_id(str(r["date"]), r["text"]),
                                                 return_dtype=pl.String)
    table = deduped.select(ids.alias("id"), "text", "date", pl.lit(params["source"]).alias("source"), *keep)
    counts = {"rows_read": raw.height, "filtered_out": raw.height - kept.height,
              "bad_rows_dropped": {k: int((bad["problem"] == k).sum()) for k in PROBLEMS},
              "outside_date_range": good.height - in_range.height,
              "duplicates_dropped": in_range.height - deduped.height, "rows_out": table.height}
    if table.height:
        counts |= {"date_min": str(table["date"].min()), "date_max": str(table["date"].max())}
    return table, counts


def read_source(params: dict) -> tuple[pl.DataFrame, str]:
    kind = params.get("kind", "file")
    if kind == "file":
        path = Path(require(params, "path", "fetch"))
        return read_file(path), str(path)
    if kind == "hf_dataset":
        spec = require(params, "hf_dataset", "fetch")
        if not spec.get("revision"):
            raise SystemExit("params.yaml: fetch.hf_dataset.revision must pin a commit so reruns read the same data")
        needed = sorted({*params["columns"].values(), *(params.get("keep_columns") or []),
                         *(f["column"] for f in params.get("filters") or [])})
        return read_hf_dataset(spec, needed), f"{spec['path']}@{spec['revision']}"
    raise SystemExit(f"params.yaml: fetch.kind must be file or hf_dataset, got {kind!r}")


def main() -> None:
    setup_logging()
    params = load_params("fetch")
    raw, where = read_source(params)
    table, counts = normalise(raw, params, where)
    if not table.height:
        raise SystemExit(f"{where}: no headlines left after filters and checks: {counts}")
    write_table(table, OUT)
    write_json(METRICS, counts)
    log.info("fetch: %d rows read, %d filtered out, %d bad, %d outside dates, %d duplicates -> %d rows %s..%s -> %s",
             counts["rows_read"], counts["filtered_out"], sum(counts["bad_rows_dropped"].values()),
             counts["outside_date_range"], counts["duplicates_dropped"], counts["rows_out"], counts.get("date_min"),
             counts.get("date_max"), OUT)


if __name__ == "__main__":
    main()
