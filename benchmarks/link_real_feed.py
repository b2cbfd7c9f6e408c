"""Security linking on a real feed with a symbol column: hit rate, linked share and hand-checked precision.

The feed is real Benzinga headlines, each with the ticker Benzinga tagged it with (date,text,symbol): the file
`analyst_ratings_processed.csv` of the GitHub repository EnderonVuthaj/Final_Project_TextGenerator (commit
146e9dcc), itself the first ~13.5k rows of `analyst_ratings_processed.csv` from the Kaggle dataset "Massive Stock
News Analysis DB for NLP/Backtests" (Miguel Aenlle): 9,991 headlines, 37 symbols (A to ACAT), 2009-2020. Its
license is unclear (the headlines are Benzinga's), so it is NOT in this repository: pass its path. With
--from-source the path is that source file itself (columns ,title,date,stock), converted as the local copy was:
two records split over two lines rejoined, date = first 10 characters, text stripped, symbol stripped and upper-
cased, rows with an empty field dropped, the 300 most frequent symbols kept, sorted by date, text, symbol, at
most 30,000 rows.

1. Company mentions: a GLiNER student (params.yaml finetune_gliner, its chosen recipe) trained once on the human
   labels of data/real_headlines/sentfin_dev.jsonl (real news, SEntFiN, MIT; company spans only, as
   scripts/real_headlines.py's company_only view: no indices, sectors, commodities): the first 1,200 titles in
   hash-of-id order train, the other 300 validate. It is cached in --train-into (outside the repo) and reused;
   --model takes any saved student folder instead. Decoded at params predict.gliner.threshold.
2. Every mention is linked by stages.securities (params.yaml link: master_files, accepted_aliases, weights, ...)
   as of its headline's date, with no name hints (the feed has no cluster names).
3. Aliases learnt from the feed, without peeking at the evaluation period: Cooccurrence over the headlines dated
   up to --learn-until, propose() with params link.aliases, then two stand-ins for the reviewer: "counts only"
   accepts every proposal with count >= --accept-min-count and precision >= --accept-min-precision; "reviewed"
   also asks, of a symbol the master knows, that the alias names the security (the proposal's names_security
   flag: its first word starts as the first word of one of the symbol's master names), which turns down the
   competitors, brokers, products and mis-tagged companies a feed tag also meets, and of a symbol the master
   does not know, that it is the symbol's most frequent name (it adds the security to the master). Accepted
   aliases join the master (Master.add_aliases). Three variants are measured: "master",
   "master_learnt_aliases" (reviewed) and "master_learnt_aliases_counts_only".
4. Figures per variant over the evaluation period (from --evaluate-from) and over all dates: headlines, with a
   mention found, hit rate (the feed symbol, or another symbol of its security, among the headline's linked
   symbols: stages/link.py FeedCheck.same_security) over all headlines and over those with a mention; the same
   over the headlines whose feed symbol the master knows on their date ("in universe"); mentions, linked share,
   evidence counts; per feed symbol, and the most frequent unlinked names.
5. Precision by hand: a seeded sample of --sample distinct linked mentions of the evaluation period (variant
   master_learnt_aliases) goes to --sample-out (outside the repo: it holds headline text) for a person to check;
   their verdicts, without headline text, are benchmarks/data/link_real_feed_check.csv (key = the first 16 hex
   digits of sha256(date + TAB + text), start, end, symbol, correct 1/0, note). Precision = correct / checked,
   with a 95% Wilson interval.

Writes metrics/link_real_feed.json (keys sorted). Deterministic but for the runtime; predictions are cached by
model and feed in --cache-dir, so a rerun (e.g. after adding verdicts) takes seconds.

  python -m benchmarks.link_real_feed /path/to/feed.csv [--model DIR] [--from-source] [--sample 150]
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import hashlib
import io
import json
import math
import random
import re
import time
from collections import Counter, defaultdict
from dataclasses import asdict
from pathlib import Path

from stages.core.io import write_json
from stages.core.params import load_params
from stages.link import FeedCheck, TableCounts
from stages.securities.aliases import Cooccurrence, propose
from stages.securities.link import Link, Linker, headline_symbols
from stages.securities.master import AcceptedAlias, Master, load_master, name_form
from stages.securities.settings import LinkParams
from stages.securities.watch import NameHistory, Watch

ROOT = Path(__file__).resolve().parents[1]
SENTFIN = ROOT / "data/real_headlines/sentfin_dev.jsonl"
NOT_COMPANIES = ROOT / "data/real_headlines/not_companies.yaml"
TRAIN_TITLES = 1200
VERDICTS = ROOT / "benchmarks/data/link_real_feed_check.csv"
OUT = ROOT / "metrics/link_real_feed.json"
VERDICT_FIELDS = ["key", "start", "end", "symbol", "correct", "note"]
SAMPLE_FIELDS = [
    "key",
    "date",
    "feed_symbol",
    "start",
    "end",
    "mention",
    "symbol",
    "master_name",
    "evidence",
    "score",
    "text",
]
REVIEWED = "master_learnt_aliases"  # the stand-in reviewer: counts, precision and the name
COUNTS_ONLY = "master_learnt_aliases_counts_only"  # every proposal above the count/precision rule
SAMPLED_VARIANT = REVIEWED
SOURCE = {
    "repository": "EnderonVuthaj/Final_Project_TextGenerator",
    "commit": "146e9dcc0b0bdb5b637861bf8b5411e261ffcd4e",
    "file": "analyst_ratings_processed.csv",
    "file_sha256": "e99d00809aa8f802897b0e2707452caef8b1e5ef7e76069a19ab623b1aa7c4f4",
    "origin": "first ~13.5k rows of analyst_ratings_processed.csv, Kaggle 'Massive Stock News Analysis DB for "
    "NLP/Backtests' (Miguel Aenlle); Benzinga headlines with the ticker Benzinga tagged",
    "license": "unclear (no LICENSE in the repository; Kaggle license not verified; headline text is Benzinga's): "
    "not committed here, read from a local path",
}


def headline_key(date: str, text: str) -> str:
    return hashlib.sha256(f"{date}\t{text}".encode()).hexdigest()[:16]


# --- the feed -------------------------------------------------------------------------------------------------


def convert_source(raw: str, top_symbols: int = 300, max_rows: int = 30000) -> list[dict]:
    """The source file (,title,date,stock) as feed rows, as /work/realfeed/convert.py made the local copy."""
    repaired = re.sub(r"\n(,\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}[-+]\d{2}:\d{2},)", r"\1", raw)
    rows = []
    for row in csv.DictReader(io.StringIO(repaired)):
        date, text, symbol = (row.get("date") or "")[:10], (row.get("title") or "").strip(), (row.get("stock") or "")
        symbol = symbol.strip().upper()
        if text and symbol and re.fullmatch(r"\d{4}-\d{2}-\d{2}", date):
            rows.append({"date": date, "text": text, "symbol": symbol})
    counts = Counter(r["symbol"] for r in rows)
    keep = {s for s, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:top_symbols]}
    return sorted((r for r in rows if r["symbol"] in keep), key=lambda r: (r["date"], r["text"], r["symbol"]))[
        :max_rows
    ]


def read_feed(path: Path, from_source: bool) -> list[dict]:
    if from_source:
        rows = convert_source(path.read_text(encoding="utf-8"))
    else:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    missing = {"date", "text", "symbol"} - set(rows[0]) if rows else {"date", "text", "symbol"}
    if missing:
        raise SystemExit(
            f"{path}: expected columns date,text,symbol (missing {sorted(missing)}); raw source: --from-source"
        )
    return [
        {
            "date": dt.date.fromisoformat(r["date"]),
            "text": r["text"],
            "symbol": r["symbol"].strip().upper(),
            "key": headline_key(r["date"], r["text"]),
        }
        for r in rows
        if r["symbol"].strip()  # a hit rate needs the feed's symbol: a headline without one is left out
    ]


# --- the student ----------------------------------------------------------------------------------------------


def sentfin_records() -> tuple[list[dict], list[dict]]:
    """SEntFiN's human labels as training records, company spans only (not_companies.yaml's view, as
    scripts/real_headlines.py scores): the first TRAIN_TITLES in hash-of-id order train, the rest validate."""
    import yaml

    from scripts.real_headlines import NotCompanies, company_only

    not_companies = NotCompanies.from_yaml(yaml.safe_load(NOT_COMPANIES.read_text()))
    with open(SENTFIN, encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    rows.sort(key=lambda r: hashlib.sha256(r["id"].encode()).hexdigest())
    records = [{"id": r["id"], "text": r["text"], "spans": company_only(r["spans"], not_companies)} for r in rows]
    return records[:TRAIN_TITLES], records[TRAIN_TITLES:]


def trained_model(directory: Path) -> Path:
    """The GLiNER of params.yaml's finetune_gliner recipe trained on SEntFiN's human labels, once: a folder that
    already holds a model is reused."""
    from stages.students.registry import STUDENTS, training_params

    if (directory / "gliner_config.json").is_file():
        return directory
    train, valid = sentfin_records()
    training = training_params("gliner", ROOT / "params.yaml")
    started = time.perf_counter()
    result = STUDENTS["gliner"].train(training, train, valid, directory)
    (directory / "benchmark_training.json").write_text(
        json.dumps(
            {
                "data": "data/real_headlines/sentfin_dev.jsonl (SEntFiN 1.0, MIT), company-only spans",
                "train_titles": len(train),
                "valid_titles": len(valid),
                "recipe": training.model_dump(mode="json"),
                "history": result.history,
                "best_epoch": result.best_epoch,
                "best_valid_f1": result.best_valid_f1,
                "training_seconds": round(time.perf_counter() - started, 1),
            },
            indent=2,
            sort_keys=True,
        )
        + "\n"
    )
    return directory


def model_provenance(model_dir: Path, trained_here: bool) -> dict:
    found: dict = {"path": str(model_dir), "trained_in_this_run": trained_here}
    for name in ("benchmark_training.json", "training.json"):
        path = model_dir / name
        if path.is_file():
            info = json.loads(path.read_text())
            found |= {
                k: info[k]
                for k in (
                    "data",
                    "train_titles",
                    "valid_titles",
                    "best_epoch",
                    "best_valid_f1",
                    "training_seconds",
                    "base_model",
                    "best",
                    "sizes",
                )
                if k in info
            }
            if "recipe" in info:
                found["base_model"] = info["recipe"].get("base_model")
                found["epochs"] = info["recipe"].get("epochs")
            break
    return found


def mentions(
    model_dir: Path, feed: list[dict], cache_dir: Path, batch_size: int
) -> tuple[list[list[dict]], float | None]:
    """The student's spans per headline, cached by model folder and feed content, and the seconds predicting took
    (when it was run; None for an older cache)."""
    from stages.core.params import load_params as params_of
    from stages.students.config import PredictParams
    from stages.students.registry import load, read_settings, student_name

    decode = params_of(PredictParams, ROOT / "params.yaml").decode(student_name(read_settings(model_dir), model_dir))
    weights = next(
        (model_dir / f for f in ("model.safetensors", "pytorch_model.bin", "model.onnx") if (model_dir / f).is_file()),
        None,
    )
    stamp = hashlib.sha256()
    stamp.update(json.dumps([str(model_dir.resolve()), decode, weights.stat().st_mtime_ns if weights else 0]).encode())
    for row in feed:
        stamp.update(f"{row['key']}\n".encode())
    cache = cache_dir / f"spans_{stamp.hexdigest()[:16]}.jsonl"
    timing = cache.with_suffix(".seconds")
    if cache.is_file():
        with open(cache, encoding="utf-8") as f:
            return [json.loads(line) for line in f], float(timing.read_text()) if timing.is_file() else None
    started = time.perf_counter()
    predict = load(model_dir, decode=decode)
    texts = [row["text"] for row in feed]
    found = []
    for first in range(0, len(texts), 512):
        found += predict(texts[first : first + 512], batch_size)
    spans = [[{"start": s["start"], "end": s["end"], "text": s["text"]} for s in row] for row in found]
    cache_dir.mkdir(parents=True, exist_ok=True)
    seconds = round(time.perf_counter() - started, 1)
    cache.write_text("".join(json.dumps(row, sort_keys=True) + "\n" for row in spans), encoding="utf-8")
    timing.write_text(f"{seconds}\n")
    return spans, seconds


# --- linking and figures --------------------------------------------------------------------------------------


def link_feed(linker: Linker, feed: list[dict], spans: list[list[dict]]) -> list[list[Link]]:
    return [
        [linker.link(s["text"], s["start"], s["end"], row["text"], row["date"]) for s in row_spans]
        for row, row_spans in zip(feed, spans)
    ]


def share(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def figures(
    master: Master, feed: list[dict], spans: list[list[dict]], links: list[list[Link]], keep
) -> tuple[dict, dict, Counter]:
    """Hit rates, linked share and evidence over the headlines `keep(row)` selects."""
    check = FeedCheck(master, "symbol", {})
    table = TableCounts()
    c: Counter[str] = Counter()
    per_symbol: dict[str, Counter[str]] = defaultdict(Counter)
    unlinked: Counter[str] = Counter()
    for row, row_spans, row_links in zip(feed, spans, links):
        if not keep(row):
            continue
        table.add(row_links)
        symbol = row["symbol"]
        hit = check.same_security(symbol, headline_symbols(row_links))
        known = bool(master.as_of(master.by_symbol.get(symbol, []), row["date"]))
        found = bool(row_spans)
        for name, value in (("", True), ("_in_universe", known)):
            if value:
                c[f"headlines{name}"] += 1
                c[f"hits{name}"] += hit
                c[f"with_company{name}"] += found
                c[f"hits_with_company{name}"] += hit and found
        s = per_symbol[symbol]
        s["headlines"] += 1
        s["with_company"] += found
        s["hits"] += hit
        s["in_master"] += known
        unlinked.update(name_form(sp["text"]) for sp, lk in zip(row_spans, row_links) if not lk.symbol)
    summary = table.summary()
    result = {
        "headlines": summary.get("headlines", 0),
        "headlines_with_mentions": summary.get("headlines_with_mentions", 0),
        "headlines_linked": summary.get("headlines_linked", 0),
        "mentions": summary.get("mentions", 0),
        "linked": summary.get("linked", 0),
        "ambiguous": summary.get("ambiguous", 0),
        "linked_share": summary["linked_share"],
        "evidence": summary["evidence"],
        "hit_rate": share(c["hits"], c["headlines"]),
        "hit_rate_with_company": share(c["hits_with_company"], c["with_company"]),
        # of the headlines where a security was linked, those whose feed symbol is among them
        "hit_rate_where_linked": share(c["hits"], summary.get("headlines_linked", 0)),
        "hits": c["hits"],
        "hits_with_company": c["hits_with_company"],
        "in_universe": {
            "headlines": c["headlines_in_universe"],
            "headlines_with_mentions": c["with_company_in_universe"],
            "hits": c["hits_in_universe"],
            "hits_with_company": c["hits_with_company_in_universe"],
            "hit_rate": share(c["hits_in_universe"], c["headlines_in_universe"]),
            "hit_rate_with_company": share(c["hits_with_company_in_universe"], c["with_company_in_universe"]),
        },
    }
    return result, per_symbol, unlinked


# --- learnt aliases -------------------------------------------------------------------------------------------


def learn_aliases(
    linker: Linker,
    master: Master,
    params: LinkParams,
    feed,
    spans,
    until: dt.date,
    min_count: int,
    min_precision: float,
) -> tuple[list[dict], dict[str, list[AcceptedAlias]]]:
    """The proposals from the learning period, and what each stand-in reviewer accepts of those at or above the
    count and precision rule. COUNTS_ONLY takes them all. REVIEWED takes, for a symbol the master knows, a
    proposal that names it (the proposal's names_security flag: a competitor, broker or product the feed's tag
    also meets does not); for a symbol it does not know (new_security), the symbol's most frequent proposal only,
    which adds the security to the master (Master.add_aliases)."""
    counts = Cooccurrence()
    for row, row_spans in zip(feed, spans):
        if row["date"] <= until:
            counts.add({f for f in (name_form(s["text"]) for s in row_spans) if f}, row["symbol"], row["date"])

    def links_now(form: str, day: dt.date) -> str | None:  # as stages/link.py: the name as a headline of its own
        return linker.link(form, 0, len(form), form, day).symbol

    found = propose(counts, params.aliases, master, links_now)
    first_new = {}  # a new symbol's most frequent proposal (proposals come most frequent first)
    for p in found:
        if p.new_security:
            first_new.setdefault(p.symbol, p)
    proposals: list[dict] = []
    accepted: dict[str, list[AcceptedAlias]] = {COUNTS_ONLY: [], REVIEWED: []}
    for p in found:
        if p.count < min_count or p.precision < min_precision:
            decision = "rejected: below the count/precision rule"
        elif p.new_security:
            decision = "accepted: new security" if first_new[p.symbol] is p else "counts only: not its top name"
        elif not p.names_security:
            decision = "counts only: does not name the security"
        else:
            decision = "accepted"
        proposals.append(
            asdict(p)
            | {"first_date": p.first_date.isoformat(), "last_date": p.last_date.isoformat(), "decision": decision}
        )
        alias = AcceptedAlias(p.alias, p.symbol, None, None, f"learnt:{p.alias}->{p.symbol}")
        if not decision.startswith("rejected"):
            accepted[COUNTS_ONLY].append(alias)
        if decision.startswith("accepted"):
            accepted[REVIEWED].append(alias)
    return proposals, accepted


# --- precision by hand ----------------------------------------------------------------------------------------


def wilson(successes: int, n: int, z: float = 1.959964) -> tuple[float | None, float | None]:
    if not n:
        return None, None
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return round(centre - half, 4), round(centre + half, 4)


def linked_mentions(feed, spans, links, keep) -> list[dict]:
    """The distinct linked mentions (headline key, start, end, symbol) of the headlines keep(row) selects."""
    found = {}
    for row, row_links, row_spans in zip(feed, links, spans):
        if not keep(row):
            continue
        for link, span in zip(row_links, row_spans):
            if link.symbol:
                key = (row["key"], span["start"], span["end"], link.symbol)
                found.setdefault(
                    key,
                    {
                        "key": row["key"],
                        "date": row["date"].isoformat(),
                        "feed_symbol": row["symbol"],
                        "start": span["start"],
                        "end": span["end"],
                        "mention": span["text"],
                        "symbol": link.symbol,
                        "master_name": link.candidates[0].name if link.candidates else "",
                        "evidence": link.evidence,
                        "score": link.score,
                        "text": row["text"],
                    },
                )
    return [found[k] for k in sorted(found)]


def precision_check(sample: list[dict], verdicts_path: Path) -> dict:
    verdicts = {}
    if verdicts_path.is_file():
        with open(verdicts_path, newline="", encoding="utf-8") as f:
            for row in csv.DictReader(f):
                verdicts[(row["key"], int(row["start"]), int(row["end"]), row["symbol"])] = row
    checked = [verdicts[k] for k in ((m["key"], m["start"], m["end"], m["symbol"]) for m in sample) if k in verdicts]
    correct = sum(int(v["correct"]) for v in checked)
    low, high = wilson(correct, len(checked))
    return {
        "sampled": len(sample),
        "with_verdict": len(checked),
        "correct": correct,
        "precision": share(correct, len(checked)),
        "ci95_wilson": [low, high],
        "verdicts_file": str(verdicts_path.relative_to(ROOT))
        if verdicts_path.is_relative_to(ROOT)
        else str(verdicts_path),
        "wrong": [{k: v[k] for k in ("symbol", "note")} for v in checked if not int(v["correct"])],
    }


def write_sample(path: Path, sample: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, SAMPLE_FIELDS)
        writer.writeheader()
        writer.writerows(sample)


# --- main -----------------------------------------------------------------------------------------------------


def period(feed: list[dict]) -> dict:
    days = [r["date"] for r in feed]
    return (
        {"headlines": len(feed), "from": min(days).isoformat(), "to": max(days).isoformat()}
        if feed
        else {"headlines": 0}
    )


def new_name_watch(feed: list[dict], spans, links, cutoff: dt.date) -> dict:
    """The link stage's new-name watch on this feed (stages/securities/watch.py), the learning period's end as the
    training cutoff: totals and the top new names of the evaluation period."""
    history = NameHistory(cutoff)
    for row, row_spans in zip(feed, spans):
        history.add(row["date"], [name_form(s["text"]) for s in row_spans])
    watch = Watch(history, queue_size=10)
    for n, (row, row_spans, row_links) in enumerate(zip(feed, spans, links)):
        names = [name_form(s["text"]) for s in row_spans]
        watch.add(str(n), row["date"], row["text"], names, [bool(link.symbol) for link in row_links])
    totals = watch.summary(top=10)["totals"]
    keys = ("cutoff", "new_names", "new_name_mentions", "unlinked_mentions", "top_new_names")
    return {key: totals[key] for key in keys}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("feed", type=Path, help="CSV date,text,symbol (or the raw source with --from-source)")
    parser.add_argument(
        "--from-source", action="store_true", help="the path is the source analyst_ratings_processed.csv"
    )
    parser.add_argument(
        "--model", type=Path, help="a saved student folder to use (default: train one, see --train-into)"
    )
    parser.add_argument(
        "--train-into",
        type=Path,
        default=None,
        help="where the SEntFiN GLiNER is trained once and cached (default: <feed folder>/models/gliner_sentfin)",
    )
    parser.add_argument("--cache-dir", type=Path, default=None, help="predicted spans (default: <feed folder>/cache)")
    parser.add_argument("--learn-until", type=dt.date.fromisoformat, default=dt.date(2016, 12, 31))
    parser.add_argument("--evaluate-from", type=dt.date.fromisoformat, default=dt.date(2017, 1, 1))
    parser.add_argument("--accept-min-count", type=int, default=3)
    parser.add_argument("--accept-min-precision", type=float, default=0.8)
    parser.add_argument("--sample", type=int, default=150, help="linked mentions drawn for the hand check")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sample-out", type=Path, default=None, help="default: <feed folder>/check_sample.csv")
    parser.add_argument("--verdicts", type=Path, default=VERDICTS)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    started = time.perf_counter()
    where = args.feed.resolve().parent

    feed = read_feed(args.feed, args.from_source)
    trained_here = (
        args.model is None
        and not ((args.train_into or where / "models/gliner_sentfin") / "gliner_config.json").is_file()
    )
    model_dir = args.model or trained_model(args.train_into or where / "models/gliner_sentfin")
    spans, predict_seconds = mentions(model_dir, feed, args.cache_dir or where / "cache", args.batch_size)

    params = load_params(LinkParams, ROOT / "params.yaml")
    accepted_file = ROOT / params.accepted_aliases if params.accepted_aliases else None
    master = load_master([ROOT / p for p in params.master_files], accepted_file)
    linker = Linker(master, params.linker)
    proposals, accepted = learn_aliases(
        linker, master, params, feed, spans, args.learn_until, args.accept_min_count, args.accept_min_precision
    )
    masters = {"master": master} | {name: master.add_aliases(rows) for name, rows in accepted.items()}

    evaluation = lambda row: row["date"] >= args.evaluate_from  # noqa: E731
    learning = lambda row: row["date"] <= args.learn_until  # noqa: E731
    variants, detail = {}, {}
    for name, variant_master in masters.items():
        links = link_feed(Linker(variant_master, params.linker), feed, spans)
        evaluated, per_symbol, unlinked = figures(variant_master, feed, spans, links, evaluation)
        everything, _, _ = figures(variant_master, feed, spans, links, lambda row: True)
        variants[name] = {"evaluation_period": evaluated, "all_dates": everything}
        detail[name] = (links, per_symbol, unlinked)

    links, per_symbol, unlinked = detail[SAMPLED_VARIANT]
    watch = new_name_watch(feed, spans, links, args.learn_until)
    pool = linked_mentions(feed, spans, links, evaluation)
    sample = sorted(
        random.Random(args.seed).sample(pool, min(args.sample, len(pool))), key=lambda m: (m["key"], m["start"])
    )
    write_sample(args.sample_out or where / "check_sample.csv", sample)
    precision = precision_check(sample, args.verdicts) | {
        "variant": SAMPLED_VARIANT,
        "period": "evaluation",
        "linked_mentions_in_pool": len(pool),
        "seed": args.seed,
    }

    symbols = Counter(r["symbol"] for r in feed)
    metrics = {
        "source": SOURCE,
        "feed": {
            "rows": len(feed),
            "symbols": len(symbols),
            "date_range": [min(r["date"] for r in feed).isoformat(), max(r["date"] for r in feed).isoformat()],
            "symbols_in_master": sorted(s for s in symbols if s in master.by_symbol),
            "symbols_not_in_master": sorted(s for s in symbols if s not in master.by_symbol),
            "headlines_of_symbols_in_master": sum(c for s, c in symbols.items() if s in master.by_symbol),
        },
        "periods": {
            "learning": period([r for r in feed if learning(r)]) | {"rule": f"date <= {args.learn_until}"},
            "evaluation": period([r for r in feed if evaluation(r)]) | {"rule": f"date >= {args.evaluate_from}"},
        },
        "model": model_provenance(model_dir, trained_here) | {"hints": "none (the feed has no cluster names)"},
        "link_params": {
            "master_files": params.master_files,
            "accepted_aliases": params.accepted_aliases,
            "alias_proposals": params.aliases.model_dump(),
            "linker": params.linker.model_dump(),
        },
        "learnt_aliases": {
            "learning_period": f"date <= {args.learn_until}",
            "reviewers": {
                COUNTS_ONLY: f"count >= {args.accept_min_count}, precision >= {args.accept_min_precision}",
                REVIEWED: f"count >= {args.accept_min_count}, precision >= {args.accept_min_precision}, and: of a "
                "symbol in the master, the alias names it (names_security: its first word starts, 4 letters, as "
                "the first word of one of the symbol's master names); of a symbol the master lacks, the symbol's "
                "most frequent name (it adds the security)",
            },
            "accepted": {name: [f"{a.alias} -> {a.symbol}" for a in rows] for name, rows in accepted.items()},
            "proposals": [
                {k: p[k] for k in ("alias", "symbol", "count", "name_count", "precision", "links_now_to", "decision")}
                for p in proposals
            ],
        },
        "variants": variants,
        "goal": {"hit_rate_with_company": 0.85, "precision": 0.95},
        "evaluation_by_feed_symbol": {s: dict(sorted(c.items())) for s, c in sorted(per_symbol.items())},
        "watch": watch,
        "evaluation_top_unlinked_names": dict(sorted(unlinked.items(), key=lambda kv: (-kv[1], kv[0]))[:25]),
        "precision_by_hand": precision,
        "runtime_seconds_this_machine": {
            "note": "machine-dependent (2 shared CPU cores here); predictions are cached, so a rerun skips them",
            "this_run": round(time.perf_counter() - started, 1),
            "student_predictions_when_run": predict_seconds,
            "student_training": model_provenance(model_dir, trained_here).get("training_seconds"),
        },
    }
    write_json(args.out, metrics)
    best = variants[SAMPLED_VARIANT]["evaluation_period"]
    print(
        json.dumps(
            {
                "evaluation_hit_rate": best["hit_rate"],
                "evaluation_hit_rate_with_company": best["hit_rate_with_company"],
                "evaluation_linked_share": best["linked_share"],
                "precision": precision["precision"],
                "precision_ci95": precision["ci95_wilson"],
                "checked": precision["with_verdict"],
                "out": str(args.out),
            }
        )
    )


if __name__ == "__main__":
    main()
