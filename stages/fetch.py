"""fetch: read the headline source named in params into one normalised, deduplicated Parquet table.

Sources (params `fetch.kind`): `file` (CSV / JSONL / Parquet, the embedded sample by default) or
`hf_dataset` (a Hugging Face dataset at a pinned revision, streamed, e.g. FNSPID). Both go through the
same column mapping, row filters, checks and dedup. Output columns: id (stable hash of date + text),
text, date, source, plus any `keep_columns`.

Before anything is paid for, the split's date ranges (split.ranges) are checked against the fetched dates: a
range holding no headline stops here, not in split after labelling. `python -m stages.fetch --check-dates`
checks the table fetch wrote (`make plan` runs it).
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import polars as pl
from tqdm import tqdm

from stages.core.cli import run_stage, setup_logging, stage_parser
from stages.core.errors import InputError, ParamsError
from stages.core.io import log, write_json, write_table
from stages.core.params import load_params
from stages.core.paths import dvc_paths
from stages.core.stage_params import FetchParams, HfDataset, RowFilter, SplitParams

ROW = "__row"  # where each record is in the source ("line 12", "row 3"), for error messages
# Dates are read only when the whole field is one of these (the date part is what counts).
DATE_PATTERN = r"^\d{4}-\d{2}-\d{2}(?:[ T]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?)?(?: ?(?:UTC|Z|[+-]\d{2}:?\d{2}))?$"
DATE_FORMATS = "YYYY-MM-DD, optionally followed by ' HH:MM[:SS[.fff]]' or 'THH:MM[:SS]' and a zone (UTC, Z, +HH:MM)"
PROBLEMS = {
    "empty_text": "empty text",
    "undecodable_bytes": "undecodable bytes in text",
    "unparsable_date": "unparsable date",
}


def headline_id(date: str, text: str) -> str:
    return hashlib.sha256(f"{date}\t{text}".encode()).hexdigest()[:16]


def csv_record_lines(path: Path) -> list[str]:
    """The line each data record of a CSV file starts on, as an editor numbers them (quoted newlines counted);
    a record with more fields than the header stops with its line."""
    csv.field_size_limit(sys.maxsize)  # a source may carry whole articles in a column we never read
    with open(path, newline="", encoding="utf-8", errors="replace") as f:
        reader = csv.reader(f)
        header = next(reader, [])
        starts, previous_end = [], reader.line_num
        for record in reader:
            if len(record) > len(header):
                raise InputError(
                    f"{path}: line {previous_end + 1}: {len(record)} fields, but the header has "
                    f"{len(header)} (an unquoted comma in a field?)"
                )
            if record:  # blank lines hold no record (polars skips them too)
                starts.append(f"line {previous_end + 1}")
            previous_end = reader.line_num
    return starts


def jsonl_record_lines(path: Path) -> list[str]:
    """The line of each JSONL record; the first malformed or non-UTF-8 line stops with its number."""
    lines = []
    with open(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as error:
                raise InputError(f"{path}: line {number}: not UTF-8 ({error.reason} at byte {error.start})") from error
            if not text.strip():
                continue
            try:
                record = json.loads(text)
            except json.JSONDecodeError as error:
                raise InputError(
                    f"{path}: line {number}: malformed JSON: {error.msg} (column {error.colno})"
                ) from error
            if not isinstance(record, dict):
                raise InputError(
                    f'{path}: line {number}: expected a JSON object ({{"column": value, ...}}), '
                    f"found {type(record).__name__}"
                )
            lines.append(f"line {number}")
    return lines


def as_text(frame: pl.DataFrame) -> pl.DataFrame:
    """Scalar columns as text; nested ones (JSON objects, lists) stay as they are, so that normalise can refuse
    them where a headline or a date is read instead of printing them as '{1}'."""
    return frame.with_columns(
        pl.col(name).cast(pl.String) for name, dtype in frame.schema.items() if not dtype.is_nested()
    )


def read_file(path: Path) -> pl.DataFrame:
    """Every column as text (so that parsing problems are ours to report), plus where each record is in the
    file ('line N' as an editor shows it for CSV and JSONL, 'row N' for Parquet)."""
    if not path.exists():
        raise InputError(f"{path}: source file not found (params.yaml fetch.path)")
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":  # lossy decoding turns bad bytes into U+FFFD, which the checks report by line
            positions = csv_record_lines(path)  # first: polars' errors name no line
            frame = pl.read_csv(path, infer_schema=False, encoding="utf8-lossy")
        elif suffix in (".jsonl", ".ndjson"):
            positions = jsonl_record_lines(path)  # checks every line first: polars' errors name no line
            frame = as_text(pl.read_ndjson(path))
        elif suffix == ".parquet":
            frame = as_text(pl.read_parquet(path))
            positions = [f"row {i}" for i in range(frame.height)]
        else:
            raise InputError(f"{path}: unsupported file type '{suffix}' (csv, jsonl, parquet)")
    except pl.exceptions.PolarsError as error:
        raise InputError(f"{path}: cannot read: {error}") from error
    if len(positions) != frame.height:
        raise InputError(
            f"{path}: read {frame.height} records but found {len(positions)}: is it a well-formed {suffix} file?"
        )
    return frame.with_columns(pl.Series(ROW, positions, dtype=pl.String))


def read_hf_dataset(
    spec: HfDataset, columns: list[str], filters: Sequence[RowFilter] = (), batch_rows: int = 50_000
) -> tuple[pl.DataFrame, int]:
    """Stream a Hugging Face dataset (a hub id at a pinned revision, or a local dataset directory): the rows that
    pass the filters (applied batch by batch, so a source of millions of rows never sits in memory) and how many
    rows were read."""
    from datasets import load_dataset

    options = {
        "revision": spec.revision,
        "name": spec.name,
        **({"data_files": spec.data_files} if spec.data_files else {}),
    }
    try:
        stream = load_dataset(spec.path, split=spec.split, streaming=True, **options)
    except Exception as error:  # datasets raises many types for "not reachable / not found"
        raise InputError(f"fetch.hf_dataset {spec.path!r}: cannot open: {error.__class__.__name__}: {error}") from error
    missing = [c for c in columns if c not in (stream.column_names or columns)]
    if missing:
        raise InputError(f"{spec.path}: missing column(s) {missing}; it has {stream.column_names}")
    frames, seen = [], 0
    for batch in tqdm(stream.select_columns(columns).iter(batch_size=batch_rows), desc="fetch", unit="batch"):
        frame = as_text(pl.DataFrame(batch))
        frame = frame.with_columns(
            pl.Series(ROW, [f"row {i}" for i in range(seen, seen + frame.height)], dtype=pl.String)
        )
        frames.append(keep_matching(frame, filters))
        seen += frame.height
    empty = pl.DataFrame(schema={**{c: pl.String for c in columns}, ROW: pl.String})
    return (pl.concat(frames) if frames else empty), seen


def filter_expression(rule: RowFilter) -> pl.Expr:
    """One row filter from params: {column, equals | contains | in: value} (validation allows exactly one)."""
    column = pl.col(rule.column)
    if rule.equals is not None:
        return column == str(rule.equals)
    if rule.contains is not None:
        return column.str.contains(rule.contains, literal=True)
    assert rule.in_ is not None  # validation allows exactly one of equals, contains, in
    return column.is_in([str(v) for v in rule.in_])


def keep_matching(frame: pl.DataFrame, filters: Sequence[RowFilter]) -> pl.DataFrame:
    """The rows that pass every filter (applying it twice changes nothing)."""
    return frame.filter(pl.all_horizontal(filter_expression(f) for f in filters)) if filters else frame


def normalise(
    raw: pl.DataFrame, params: FetchParams, where: str, rows_read: int | None = None
) -> tuple[pl.DataFrame, dict]:
    """Filter, map columns, check every row, drop exact duplicates. Returns the table and its counts.
    rows_read: how many rows the source had when the reader filtered them already (default: raw's)."""
    columns, keep = params.columns, params.keep_columns
    used = list(dict.fromkeys([*columns.values(), *keep, *(f.column for f in params.filters)]))
    missing = [c for c in used if c not in raw.columns]
    if missing:
        absent = [c for c in missing if c in keep]
        hint = (
            f"; fetch.keep_columns names {absent}: a source without them keeps none (the demo's `symbol`: set "
            f"fetch.keep_columns: [] and link.symbol_column: null)"
            if absent
            else ""
        )
        raise InputError(
            f"{where}: missing column(s) {missing}; the source has "
            f"{[c for c in raw.columns if c != ROW]} (map them with params.yaml fetch.columns, "
            f"keep_columns and filters){hint}"
        )
    if ROW not in raw.columns:
        raw = raw.with_columns(pl.format("row {}", pl.int_range(pl.len())).alias(ROW))
    for name in used:
        if raw.schema[name] != pl.String:
            first = next(iter(raw.filter(pl.col(name).is_not_null())[ROW]), "every row")
            raise InputError(
                f"{where}: {first}: column {name!r} holds {raw.schema[name]} values (nested JSON), not text"
            )
    rows_read = raw.height if rows_read is None else rows_read
    kept = keep_matching(raw, params.filters)
    frame = kept.select(
        pl.col(columns["text"]).str.strip_chars().alias("text"),
        pl.col(columns["date"]).alias("date_raw"),
        pl.col(ROW).alias("row"),
        *keep,
    )
    whole = pl.col("date_raw").str.strip_chars().str.contains(DATE_PATTERN)
    frame = frame.with_columns(
        date=pl.when(whole).then(
            pl.col("date_raw").str.strip_chars().str.slice(0, 10).str.to_date("%Y-%m-%d", strict=False)
        )
    )
    problem = (
        pl.when(pl.col("text").is_null() | (pl.col("text") == ""))
        .then(pl.lit("empty_text"))
        .when(pl.col("text").str.contains("\ufffd", literal=True))
        .then(pl.lit("undecodable_bytes"))
        .when(pl.col("date").is_null())
        .then(pl.lit("unparsable_date"))
    )
    frame = frame.with_columns(problem=problem)
    bad = frame.filter(pl.col("problem").is_not_null())
    if bad.height and params.on_bad_row == "error":
        first = bad.row(0, named=True)
        detail = f" {first['date_raw']!r} (accepted: {DATE_FORMATS})" if first["problem"] == "unparsable_date" else ""
        raise InputError(
            f"{where}: {first['row']}: {PROBLEMS[first['problem']]}{detail} ({bad.height} bad "
            f"row(s) in all; set fetch.on_bad_row: drop to skip and count them)"
        )
    good = frame.filter(pl.col("problem").is_null())
    in_range = good.filter(
        pl.col("date").is_between(params.date_range.start or dt.date.min, params.date_range.end or dt.date.max)
    )
    deduped = in_range.unique(subset=["date", "text"], keep="first", maintain_order=True)
    ids = pl.struct("date", "text").map_elements(
        lambda r: headline_id(str(r["date"]), r["text"]), return_dtype=pl.String
    )
    table = deduped.select(ids.alias("id"), "text", "date", pl.lit(params.source).alias("source"), *keep)
    counts = {
        "rows_read": rows_read,
        "filtered_out": rows_read - kept.height,
        "bad_rows_dropped": {k: int((bad["problem"] == k).sum()) for k in PROBLEMS},
        "outside_date_range": good.height - in_range.height,
        "duplicates_dropped": in_range.height - deduped.height,
        "rows_out": table.height,
    }
    if table.height:
        counts |= {"date_min": str(table["date"].min()), "date_max": str(table["date"].max())}
    return table, counts


def read_source(params: FetchParams) -> tuple[pl.DataFrame, int, str]:
    """The source's rows (a hub dataset's already filtered while streaming), how many were read, and its name."""
    if params.kind == "file":
        path = Path(params.path)
        frame = read_file(path)
        return frame, frame.height, str(path)
    spec = params.hf_dataset
    needed = sorted({*params.columns.values(), *params.keep_columns, *(f.column for f in params.filters)})
    frame, rows_read = read_hf_dataset(spec, needed, params.filters)
    return frame, rows_read, f"{spec.path}@{spec.revision}"


def check_split_ranges(dates: pl.Series, split: SplitParams) -> str:
    """split.ranges against the fetched dates, before anything is paid for: a range holding no fetched headline
    would stop split only after labelling. Returns one line (the headlines each range holds); a range holding
    none is one line (ParamsError) naming it, the data's date span and the params to change."""
    span = f"{dates.min()!s}..{dates.max()!s}"
    ranges = sorted(split.ranges.items(), key=lambda item: item[1].start)  # date order (safe_dump sorts keys)
    inside = {name: dates.is_between(r.start, r.end) for name, r in ranges}
    empty = [f"split.ranges.{name} ({r.start}..{r.end})" for name, r in ranges if not inside[name].any()]
    if empty:
        raise ParamsError(
            f"fetch: {' and '.join(empty)} {'holds' if len(empty) == 1 else 'hold'} none of the "
            f"{dates.len():,} fetched headlines, which span {span}; change split.ranges in params.yaml to dates "
            f"in that span, or what fetch keeps (fetch.path or fetch.hf_dataset, fetch.filters, fetch.date_range)"
        )
    outside = dates.len() - int(pl.DataFrame(inside).select(pl.any_horizontal(pl.all())).to_series().sum())
    held = ", ".join(f"{name} {int(rows.sum()):,}" for name, rows in inside.items())
    return (
        f"fetch: split.ranges hold {held} of the {dates.len():,} fetched headlines ({span}); "
        f"{outside:,} outside every range"
    )


def main(argv: list[str] | None = None) -> None:
    parser = stage_parser(__doc__.splitlines()[0], optional=("out", "metrics"))
    parser.add_argument(
        "--check-dates",
        action="store_true",
        help="check split.ranges against the headlines fetch wrote (--out, default dvc.yaml's); fetch nothing",
    )
    args = parser.parse_args(argv)
    if not args.check_dates and not (args.out and args.metrics):
        parser.error("--out and --metrics required (dvc.yaml's fetch command gives them; --check-dates needs none)")
    setup_logging()
    if args.check_dates:
        fetched = args.out or dvc_paths(Path.cwd())["headlines"]
        if not fetched.exists():
            raise InputError(f"{fetched}: not found (run fetch first: dvc repro fetch)")
        log.info("%s", check_split_ranges(pl.read_parquet(fetched, columns=["date"])["date"], load_params(SplitParams)))
        return
    params = load_params(FetchParams)
    split = load_params(SplitParams)  # only split.ranges (dvc.yaml declares it): checked before labelling pays
    raw, rows_read, where = read_source(params)
    table, counts = normalise(raw, params, where, rows_read)
    if not table.height:
        raise InputError(f"{where}: no headlines left after filters and checks: {counts}")
    log.info("%s", check_split_ranges(table["date"], split))
    write_table(table, args.out)
    write_json(args.metrics, counts)
    log.info(
        "fetch: %d rows read, %d filtered out, %d bad, %d outside dates, %d duplicates -> %d rows %s..%s -> %s",
        counts["rows_read"],
        counts["filtered_out"],
        sum(counts["bad_rows_dropped"].values()),
        counts["outside_date_range"],
        counts["duplicates_dropped"],
        counts["rows_out"],
        counts.get("date_min"),
        counts.get("date_max"),
        args.out,
    )


if __name__ == "__main__":
    run_stage(main)
