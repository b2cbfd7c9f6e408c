"""link: every mention of the teacher's labels, the reviewed labels and tag's table gets its security as of its date.

Reads the security master (params link.master_files, then link.accepted_aliases) and links each span of
data/labels/llm_labels.parquet (teacher_spans, with the teacher's normalised names as hints),
data/reviewed/<split>.parquet (label_spans) and data/tagged/headlines.parquet (spans, with their cluster names as
hints), streaming each a row group at a time. Writes the same rows under data/linked/ (teacher.parquet,
reviewed/<split>.parquet, tagged.parquet): each span gains `symbol` (null when unknown or ambiguous),
`link_score`, `evidence` and its top `candidates`, and each headline its `symbols`.

Also: data/linked/alias_proposals.csv, names that meet one feed symbol (link.symbol_column) often and mostly,
for a reviewer to accept into the accepted-aliases file; data/linked/watch_queue.csv, the headlines with names
first seen after the training split's end or with unlinked mentions, in review priority; metrics/link.json
(linked shares, the accuracy on link.gold_file, the feed's hit rate, the watch's totals), its headline figures
in metrics/linking.json (a DVC metric), and metrics/watch_by_month.csv (the new-name watch by month, a plot).
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from stages.core.cli import run_stage, stage_args
from stages.core.errors import InputError
from stages.core.io import log, read_jsonl, write_csv, write_json
from stages.core.params import load_params
from stages.core.schema import SPLITS
from stages.core.stage_params import SplitParams
from stages.securities.aliases import Cooccurrence, Proposal, propose
from stages.securities.link import Link, Linker, headline_symbols
from stages.securities.master import Master, describe, load_master, name_form
from stages.securities.settings import LinkParams
from stages.securities.watch import NameHistory, Watch

READ_ROWS = 8192
CANDIDATE = pa.struct(
    [("symbol", pa.string()), ("name", pa.string()), ("score", pa.float64()), ("evidence", pa.string())]
)
LINK_FIELDS = [
    pa.field("symbol", pa.string()),
    pa.field("link_score", pa.float64()),
    pa.field("evidence", pa.string()),
    pa.field("candidates", pa.list_(CANDIDATE)),
]

Hints = Callable[[dict[str, Any], dict[str, Any]], tuple[str, ...]]  # (row, span) -> names to look up too


def linked_schema(source: pa.Schema, spans_column: str) -> pa.Schema:
    span_fields = list(source.field(spans_column).type.value_type) + LINK_FIELDS
    fields = [f for f in source if f.name != spans_column]
    return pa.schema(
        fields + [pa.field("spans", pa.list_(pa.struct(span_fields))), pa.field("symbols", pa.list_(pa.string()))]
    )


def link_spans(linker: Linker, row: dict[str, Any], spans: list[dict], hints: Hints) -> tuple[list[dict], list[Link]]:
    links = [linker.link(s["text"], s["start"], s["end"], row["text"], row["date"], hints(row, s)) for s in spans]
    linked = [
        {
            **span,
            "symbol": link.symbol,
            "link_score": link.score,
            "evidence": link.evidence,
            "candidates": [asdict(c) for c in link.candidates],
        }
        for span, link in zip(spans, links)
    ]
    return linked, links


class TableCounts:
    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.evidence: Counter[str] = Counter()

    def add(self, links: list[Link]) -> None:
        self.counts["headlines"] += 1
        self.counts["headlines_with_mentions"] += bool(links)
        self.counts["headlines_linked"] += any(link.symbol for link in links)
        self.counts["mentions"] += len(links)
        self.counts["linked"] += sum(1 for link in links if link.symbol)
        self.counts["ambiguous"] += sum(1 for link in links if link.evidence == "ambiguous")
        self.evidence.update(link.evidence for link in links if link.symbol and link.evidence)

    def summary(self) -> dict:
        c = self.counts
        return dict(c) | {
            "linked_share": round(c["linked"] / c["mentions"], 4) if c["mentions"] else None,
            "evidence": dict(sorted(self.evidence.items())),
        }


def rows_of(path: Path, columns: list[str] | None = None) -> Iterator[list[dict[str, Any]]]:
    for batch in pq.ParquetFile(path).iter_batches(batch_size=READ_ROWS, columns=columns):
        yield batch.to_pylist()


def link_table(
    linker: Linker,
    source: Path,
    out: Path,
    spans_column: str,
    hints: Hints,
    on_row: Callable[[dict[str, Any], list[dict], list[Link]], None] | None = None,
) -> dict:
    """Link every span of one table into `out`, a row group per read, and count what was linked."""
    if not source.exists():
        raise InputError(f"{source}: not found (run the upstream stage first: dvc repro)")
    schema = pq.read_schema(source)
    if spans_column not in schema.names or "text" not in schema.names or "date" not in schema.names:
        raise InputError(f"{source}: needs columns text, date and {spans_column}; has {schema.names}")
    target = linked_schema(schema, spans_column)
    counts = TableCounts()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".parquet.tmp")
    with pq.ParquetWriter(tmp, target, compression="zstd", write_statistics=False) as writer:
        for rows in tqdm(rows_of(source), desc=f"link {source.name}", unit="batch", mininterval=10):
            for row in rows:
                spans = row.pop(spans_column) or []
                row["spans"], links = link_spans(linker, row, spans, hints)
                row["symbols"] = headline_symbols(links)
                counts.add(links)
                if on_row:
                    on_row(row, spans, links)
            writer.write_table(pa.Table.from_pylist(rows, schema=target))
    tmp.replace(out)
    return counts.summary()


def teacher_hints(row: dict[str, Any], span: dict) -> tuple[str, ...]:
    """The teacher's normalised name for the mention it wrote as this span's text."""
    return tuple(
        name
        for mention, name in zip(row.get("mentions") or [], row.get("names") or [])
        if mention == span["text"] and name
    )


def cluster_hint(_row: dict[str, Any], span: dict) -> tuple[str, ...]:
    return (span["name"],) if span.get("name") else ()


def gold_accuracy(
    linker: Linker, path: Path, limit_errors: int = 20
) -> tuple[dict, dict[tuple[str, int, int], str | None]]:
    """Mention-level accuracy of the linker on the gold's own spans (a null gold symbol: nothing should link),
    and the gold by (text, start, end) for the end-to-end count on tag's spans."""
    right, total = 0, 0
    errors: list[dict] = []
    by_span: dict[tuple[str, int, int], str | None] = {}
    for number, row in enumerate(read_jsonl(path), 1):
        try:
            day = dt.date.fromisoformat(row["date"])
            mentions = [(int(m["start"]), int(m["end"]), m.get("symbol")) for m in row["mentions"]]
        except (KeyError, TypeError, ValueError) as error:
            raise InputError(
                f"{path}:{number}: expected text, date (YYYY-MM-DD) and mentions [{{start, end, symbol}}]: {error}"
            ) from None
        for start, end, symbol in mentions:
            link = linker.link(row["text"][start:end], start, end, row["text"], day)
            by_span[(row["text"], start, end)] = symbol
            total += 1
            right += link.symbol == symbol
            if link.symbol != symbol and len(errors) < limit_errors:
                errors.append(
                    {
                        "text": row["text"],
                        "date": row["date"],
                        "mention": row["text"][start:end],
                        "gold": symbol,
                        "linked": link.symbol,
                        "evidence": link.evidence,
                        "candidates": [c.symbol for c in link.candidates],
                    }
                )
    return {
        "mentions": total,
        "correct": right,
        "accuracy": round(right / total, 4) if total else None,
        "errors": errors,
    }, by_span


class FeedCheck:
    """Against the feed's own symbol per headline: the share of headlines whose symbol (or the same security
    under another symbol) is among the linked ones, over all headlines with a symbol and over those where a
    company was found; and, with a gold, tag's mentions linked to the gold symbol end to end."""

    def __init__(self, master: Master, column: str | None, gold: dict[tuple[str, int, int], str | None]):
        self.master, self.column, self.gold = master, column, gold
        self.gold_per_text = Counter(text for text, _, _ in gold)  # a feed holding none of the gold scores nothing
        self.counts: Counter[str] = Counter()
        self.cooccurrence = Cooccurrence()

    def same_security(self, symbol: str, linked: list[str]) -> bool:
        ids = {s.security_id for s in self.master.by_symbol.get(symbol, [])}
        return symbol in linked or any(s.security_id in ids for x in linked for s in self.master.by_symbol.get(x, []))

    def add(self, row: dict[str, Any], spans: list[dict], links: list[Link]) -> None:
        if self.gold:
            self.counts["gold_mentions_in_feed"] += self.gold_per_text.pop(row["text"], 0)
            for span, link in zip(spans, links):
                key = (row["text"], span["start"], span["end"])
                if key in self.gold:
                    self.counts["gold_mentions_found"] += 1
                    self.counts["gold_mentions_found_and_linked_right"] += link.symbol == self.gold[key]
        symbol = (row.get(self.column) or "").strip().upper() if self.column else ""
        if not symbol:
            return
        hit = self.same_security(symbol, row["symbols"])
        self.counts["headlines_with_symbol"] += 1
        self.counts["hits"] += hit
        if spans:
            self.counts["with_company"] += 1
            self.counts["hits_with_company"] += hit
        if row["symbols"]:
            self.counts["linked"] += 1
        self.cooccurrence.add({f for f in (name_form(s["text"]) for s in spans) if f}, symbol, row["date"])

    def summary(self) -> dict:
        c = self.counts
        found = {}
        if c["gold_mentions_in_feed"]:
            found = {
                "gold_mentions_in_feed": c["gold_mentions_in_feed"],
                "tag_found_gold_span": c["gold_mentions_found"],
                "tag_found_and_linked_right": c["gold_mentions_found_and_linked_right"],
                "end_to_end_accuracy": round(c["gold_mentions_found_and_linked_right"] / c["gold_mentions_in_feed"], 4),
            }
        if not self.column:
            return found
        return found | {
            "symbol_column": self.column,
            "headlines_with_symbol": c["headlines_with_symbol"],
            "hit_rate": round(c["hits"] / c["headlines_with_symbol"], 4) if c["headlines_with_symbol"] else None,
            "headlines_with_company": c["with_company"],
            "hit_rate_with_company": round(c["hits_with_company"] / c["with_company"], 4)
            if c["with_company"]
            else None,
            "headlines_linked": c["linked"],  # a hit needs a link: hits / linked is how often a link finds it
            "hit_rate_where_linked": round(c["hits"] / c["linked"], 4) if c["linked"] else None,
        }


def headline_figures(metrics: dict) -> dict:
    """The numbers `dvc metrics diff` compares between runs (metrics/linking.json): the full report stays in
    metrics/link.json."""
    gold, feed, watch = metrics["gold"], metrics["feed"], metrics["watch"]
    figures = {
        "gold_accuracy": gold.get("accuracy"),
        "gold_accuracy_without_accepted_aliases": gold.get("accuracy_without_accepted_aliases"),
        "gold_mentions": gold.get("mentions"),
        "end_to_end_accuracy": feed.get("end_to_end_accuracy"),
        "hit_rate": feed.get("hit_rate"),
        "hit_rate_with_company": feed.get("hit_rate_with_company"),
        "hit_rate_where_linked": feed.get("hit_rate_where_linked"),
        "tagged_linked_share": metrics["tables"]["tagged"]["linked_share"],
        "watch_unlinked_mentions": watch["unlinked_mentions"],
        "watch_new_names": watch["new_names"],
        "watch_new_name_mentions": watch["new_name_mentions"],
    }
    return {key: value for key, value in figures.items() if value is not None}


def main(argv: list[str] | None = None) -> None:
    args = stage_args(
        __doc__.splitlines()[0],
        ("teacher", "reviewed", "tagged", "out-dir", "metrics", "summary", "watch-plot"),
        argv,
    )
    params = load_params(LinkParams)
    cutoff = load_params(SplitParams).ranges["train"].end
    accepted = Path(params.accepted_aliases) if params.accepted_aliases else None
    master = load_master([Path(p) for p in params.master_files], accepted)
    linker = Linker(master, params.linker)
    log.info(
        "link: master of %d rows, %d symbols, %d name forms",
        len(master.securities),
        len(master.by_symbol),
        len(master.by_form),
    )

    gold, gold_by_span = gold_accuracy(linker, Path(params.gold_file)) if params.gold_file else ({}, {})
    if params.gold_file and accepted:  # what the reviewed aliases add: the same gold, the master alone
        files_only = Linker(load_master([Path(p) for p in params.master_files], None), params.linker)
        gold["accuracy_without_accepted_aliases"] = gold_accuracy(files_only, Path(params.gold_file))[0]["accuracy"]
    tagged_schema = pq.read_schema(args.tagged)
    if params.symbol_column and params.symbol_column not in tagged_schema.names:
        raise InputError(
            f"{args.tagged}: no column {params.symbol_column!r} (params link.symbol_column); "
            "keep it with fetch.keep_columns"
        )

    history = NameHistory(cutoff)
    for rows in rows_of(args.reviewed / "train.parquet", ["label_spans"]):
        history.known.update(name_form(s["text"]) for row in rows for s in row["label_spans"] or [])
    for rows in rows_of(args.tagged, ["date", "spans"]):
        for row in rows:
            history.add(row["date"], [name_form(s["text"]) for s in row["spans"] or []])
    watch = Watch(history, params.watch_queue_size)
    feed = FeedCheck(master, params.symbol_column, gold_by_span)

    def on_tagged(row: dict[str, Any], spans: list[dict], links: list[Link]) -> None:
        watch.add(
            row["id"], row["date"], row["text"], [name_form(s["text"]) for s in spans], [bool(x.symbol) for x in links]
        )
        feed.add(row, spans, links)

    out = args.out_dir
    tables = {"teacher": link_table(linker, args.teacher, out / "teacher.parquet", "teacher_spans", teacher_hints)}
    tables |= {
        f"reviewed_{split}": link_table(
            linker,
            args.reviewed / f"{split}.parquet",
            out / "reviewed" / f"{split}.parquet",
            "label_spans",
            teacher_hints,
        )
        for split in SPLITS
    }
    tables["tagged"] = link_table(linker, args.tagged, out / "tagged.parquet", "spans", cluster_hint, on_tagged)

    def links_now(form: str, day: dt.date) -> str | None:  # the name as a headline of its own would link it
        return linker.link(form, 0, len(form), form, day).symbol

    proposals = propose(feed.cooccurrence, params.aliases, master, links_now)
    write_csv(out / "alias_proposals.csv", [asdict(p) for p in proposals], [f.name for f in fields(Proposal)])
    write_csv(
        out / "watch_queue.csv",
        [
            {
                "id": f.id,
                "date": f.date.isoformat(),
                "text": f.text,
                "new_names": "|".join(f.new_names),
                "unlinked": f.unlinked,
            }
            for f in watch.queue()
        ],
        ["id", "date", "text", "new_names", "unlinked"],
    )
    summary = watch.summary(params.watch_top_names)
    write_csv(
        args.watch_plot,
        [
            {
                "month": month,
                **{k: v for k, v in m.items() if k != "top_new_names"},
                "top_new_names": "|".join(f"{n}:{c}" for n, c in m["top_new_names"]),
            }
            for month, m in summary["months"].items()
        ],
        ["month", "headlines", "mentions", "unlinked_mentions", "new_name_mentions", "top_new_names"],
    )
    metrics = {
        "master": describe(master, params.master_files) | {"accepted_aliases": params.accepted_aliases},
        "tables": tables,
        "gold": gold,
        "feed": feed.summary(),
        "alias_proposals": len(proposals),
        "watch": summary["totals"],
    }
    write_json(args.metrics, metrics)
    write_json(args.summary, headline_figures(metrics))
    log.info(
        "link: tagged mentions linked %s; gold accuracy %s of %s; feed %s; %d alias proposals; watch %s",
        tables["tagged"]["linked_share"],
        gold.get("accuracy"),
        gold.get("mentions"),
        metrics["feed"],
        len(proposals),
        summary["totals"],
    )


if __name__ == "__main__":
    run_stage(main)
