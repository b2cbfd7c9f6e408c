"""Real headlines: the whole pipeline on real financial news that no one here wrote, scored against its humans.

Takes a slice of SEntFiN (data/real_headlines/: real Indian and international headlines with human entity
annotations, MIT, see its README) and runs `dvc repro` in a scratch copy of this working tree as a user would
on their own data: the slice's headlines as `fetch.path`, its annotations as an existing human-label file
(`argilla_review.label_files`), the rest of the shipped file as an `evaluate.extra_test_sets` file, every
other param as params.yaml has it (but `llm_label.limit: null`, so the teacher labels the whole slice).

SEntFiN has no dates, and the pipeline splits by date: each headline gets a synthetic date, deterministically.
Headlines are ordered by a hash of their id; the first `--headlines` form the slice, the next `--extra` the
extra test set. Within the slice the first 60% get train dates, the next 20% valid and the last 20% test: the
i-th headline of a split is dated i days after its `split.ranges` start (wrapping inside the range).

SEntFiN's guidelines count sectors, indices, commodities and regulators too ("IT stocks", "Nifty", "gold"),
which a company extractor is not asked for, so every model is scored three ways: on all spans (exact, as evaluate
does) and on capitalised spans only (gold and predicted spans whose first character is not a lowercase
letter: drops "gold", "rupee", "realty stocks"; keeps "3M", "Nifty", "Sebi"), and "company_only":
capitalised spans that data/real_headlines/not_companies.yaml does not list as an index, market, sector,
commodity, currency, regulator or place (what our review guidelines say is no company). The last two views drop
such spans from gold and predictions alike: a model is neither credited nor charged for them.
The company-only reference is also scored as if it were a model ("company_only_reference"): its all-spans F1 is
the most a model that names companies only, and nothing SEntFiN calls a sector or index, can score there.
Writes metrics/real_headlines.json. About 15-25 minutes on 2 cores (the local teacher labels ~1 headline/s).

  python -m scripts.real_headlines [--headlines 500] [--extra 1000] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from scripts.worktree import copy_worktree
from stages.core.metrics import score
from stages.core.params import load_params
from stages.core.stage_params import Bootstrap, EvaluateParams, SplitParams

ROOT = Path(__file__).resolve().parents[1]

SOURCE = ROOT / "data/real_headlines/sentfin_dev.jsonl"
NOT_COMPANIES = ROOT / "data/real_headlines/not_companies.yaml"
OUT = ROOT / "metrics/real_headlines.json"
SHARES = (("train", 0.6), ("valid", 0.2), ("test", 0.2))
SPLITS = [name for name, _ in SHARES]
HEADLINES_FILE = "data/real_headlines/headlines.jsonl"  # inside the scratch copy: fetch.path
LABELS_FILE = "data/real_headlines/reviewer_labels.jsonl"  # the slice's annotations as reviewers' labels
EXTRA_FILE = "data/test_sets/sentfin_rest.jsonl"  # the rest of the slice: an extra test set
MODELS = ("gliner", "spanmarker", "gliner_export", "spanmarker_export")
KEYS = ("f1", "f1_ci_low", "f1_ci_high", "precision", "recall")
VIEWS = ("capitalised", "company_only")  # besides all spans, which the top-level figures are
CEILING = "company_only_reference"


def hash_order(rows: list[dict]) -> list[dict]:
    return sorted(rows, key=lambda r: hashlib.sha256(r["id"].encode()).hexdigest())


def take_slice(rows: list[dict], headlines: int, extra: int) -> tuple[list[dict], list[dict]]:
    """(the pipeline's headlines, the extra test set): disjoint, in hash-of-id order, deduplicated by text."""
    ordered, seen = [], set()
    for row in hash_order(rows):
        if row["text"] not in seen:
            seen.add(row["text"])
            ordered.append(row)
    if len(ordered) < headlines:
        raise SystemExit(f"--headlines {headlines}: the source has only {len(ordered)} distinct headlines")
    return ordered[:headlines], ordered[headlines : headlines + extra]


def split_sizes(n: int) -> dict[str, int]:
    train, valid = round(n * SHARES[0][1]), round(n * SHARES[1][1])
    return {"train": train, "valid": valid, "test": n - train - valid}


def assign_dates(rows: list[dict], ranges: SplitParams) -> list[dict]:
    """Each row with a synthetic date inside its split's range (see the module doc)."""
    dated, first = [], 0
    for split, size in split_sizes(len(rows)).items():
        window = ranges.ranges[split]
        days = (window.end - window.start).days + 1
        for i, row in enumerate(rows[first : first + size]):
            dated.append(row | {"date": (window.start + dt.timedelta(days=i % days)).isoformat()})
        first += size
    return dated


def capitalised(spans: list[dict]) -> list[dict]:
    """The spans whose first character is not a lowercase letter (SEntFiN's sectors and commodities go)."""
    return [s for s in spans if not s["text"][:1].islower()]


@dataclass(frozen=True)
class NotCompanies:
    """not_companies.yaml as sets: span texts (lowercased) and last words that mark a span as no company."""

    texts: frozenset[str]
    last_words: frozenset[str]

    @classmethod
    def from_yaml(cls, document: dict) -> NotCompanies:
        return cls(
            frozenset(t for group in document["texts"].values() for t in group), frozenset(document["last_words"])
        )


def company_only(spans: list[dict], not_companies: NotCompanies) -> list[dict]:
    """The capitalised spans that not_companies does not list as no company."""
    return [
        s
        for s in capitalised(spans)
        if s["text"].lower() not in not_companies.texts
        and s["text"].lower().split()[-1] not in not_companies.last_words
    ]


def scores(gold: list[dict], predicted: list[list[dict]], bootstrap: Bootstrap, not_companies: NotCompanies) -> dict:
    """{all spans, capitalised spans, company-only spans} scores of predictions against records {text, spans}."""
    views = {
        "all": lambda spans: spans,
        "capitalised": capitalised,
        "company_only": lambda spans: company_only(spans, not_companies),
    }
    result = {}
    for view, keep in views.items():
        figures = score([r | {"spans": keep(r["spans"])} for r in gold], [keep(p) for p in predicted], bootstrap)
        result[view] = {k: figures[k] for k in KEYS}
    return result


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.writelines(json.dumps(row, ensure_ascii=False, sort_keys=True) + "\n" for row in rows)


def scratch_copy(workdir: Path, fresh: bool) -> None:
    """The working tree (tracked and untracked-but-not-ignored files) copied over workdir, committed in its own
    git repo: a second run there reruns only the stages whose code, params or data changed (the teacher's
    answers stay cached). fresh: start from an empty workdir."""
    if fresh:
        shutil.rmtree(workdir, ignore_errors=True)
    # not the demo's dvc.lock and metrics: here they describe this run's outputs
    copy_worktree(workdir, lambda name: name == "dvc.lock" or name.startswith("metrics/"))
    (workdir / "metrics").mkdir(exist_ok=True)
    if not (workdir / ".git").is_dir():
        subprocess.run(["git", "init", "-q"], cwd=workdir, check=True)


def commit(workdir: Path) -> None:
    for command in (
        ["git", "add", "-A"],
        [
            "git",
            "-c",
            "user.name=real-headlines",
            "-c",
            "user.email=none@localhost",
            "commit",
            "-qm",
            "real-headline run",
            "--allow-empty",
        ],
    ):
        subprocess.run(command, cwd=workdir, check=True, capture_output=True)


def point_params(workdir: Path, teacher_threads: int | None) -> None:
    """The user's-own-data params: fetch the slice, take its annotations as reviewers', score the rest too
    (teacher_threads: the local teacher's threads, for a machine shared with other jobs; None keeps params')."""
    params = yaml.safe_load((workdir / "params.yaml").read_text())
    if teacher_threads:
        params["llm_label"]["local_threads"] = teacher_threads
    params["fetch"].update(
        source="sentfin", kind="file", path=HEADLINES_FILE, columns={"text": "text", "date": "date"}, keep_columns=[]
    )
    params["link"].update(symbol_column=None, gold_file=None)  # SEntFiN has no symbols, and the gold is the demo's
    params["llm_label"]["limit"] = None
    params["argilla_review"].update(label_dir=str(Path(LABELS_FILE).parent), label_files=[LABELS_FILE])
    params["evaluate"]["extra_test_sets"] = [EXTRA_FILE]
    (workdir / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def run_pipeline(workdir: Path) -> None:
    env = dict(
        os.environ,
        HF_HUB_OFFLINE=os.environ.get("HF_HUB_OFFLINE", "1"),
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    )
    # evaluate and what it depends on: stages after it (tagging the whole feed) add nothing to this run
    subprocess.run([str(Path(sys.executable).parent / "dvc"), "repro", "evaluate"], cwd=workdir, env=env, check=True)


def model_scores(workdir: Path, records: list[dict], bootstrap: Bootstrap, teacher: list[list[dict]] | None) -> dict:
    """Every student (and the teacher's labels, where given) on records, each view; and CEILING: the company-only
    reference itself as predictions, which bounds what a model that names companies only scores on all spans."""
    from stages.students.registry import STUDENTS

    not_companies = NotCompanies.from_yaml(yaml.safe_load(NOT_COMPANIES.read_text()))
    texts = [r["text"] for r in records]
    result = {"teacher": scores(records, teacher, bootstrap, not_companies)} if teacher is not None else {}
    result[CEILING] = scores(
        records, [company_only(r["spans"], not_companies) for r in records], bootstrap, not_companies
    )
    for name in MODELS:
        predict = STUDENTS[name.removesuffix("_export")].load(workdir / "models" / name)
        result[name] = scores(records, predict(texts, 32), bootstrap, not_companies)
    return result


def report(workdir: Path, extra: list[dict], seconds: float | None) -> dict:
    import polars as pl

    from stages.labels.records import human_records, labelled_records

    bootstrap = load_params(EvaluateParams, workdir / "params.yaml").bootstrap
    test = pl.read_parquet(workdir / "data/reviewed/test.parquet")
    records = human_records(labelled_records(test))
    teacher_spans = dict(zip(test["id"].to_list(), test["teacher_spans"].to_list()))
    on_test = model_scores(workdir, records, bootstrap, [teacher_spans[r["id"]] or [] for r in records])
    on_extra = model_scores(workdir, extra, bootstrap, None)
    metrics = json.loads((workdir / "metrics/metrics.json").read_text())
    sizes = {k: v for k, v in json.loads((workdir / "metrics/split.json").read_text()).items() if k in SPLITS}
    for name in ("teacher", *MODELS):  # the pipeline's own figures must be the ones recomputed here
        if abs(metrics[name]["f1"] - on_test[name]["all"]["f1"]) > 1e-9:
            raise SystemExit(f"{name}: evaluate says F1 {metrics[name]['f1']}, recomputed {on_test[name]['all']['f1']}")
    return {
        "source": "SEntFiN 1.0 (MIT), data/real_headlines/sentfin_dev.jsonl",
        "headlines": sum(sizes.values()),
        **sizes,
        "test_human_labelled": len(records),
        "reference": metrics["reference"],
        **{name: on_test[name]["all"] for name in on_test},
        **{view: {name: on_test[name][view] for name in on_test} for view in VIEWS},
        "extra_test_set": {
            "headlines": len(extra),
            **{name: on_extra[name]["all"] for name in on_extra},
            **{view: {name: on_extra[name][view] for name in on_extra} for view in VIEWS},
        },
        "pipeline_seconds": None if seconds is None else round(seconds),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=SOURCE, help="JSONL of {id, text, spans}")
    parser.add_argument("--headlines", type=int, default=500, help="headlines the pipeline runs on")
    parser.add_argument("--extra", type=int, default=1000, help="further headlines scored as an extra test set")
    parser.add_argument("--workdir", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "headline-ner-real")
    parser.add_argument(
        "--teacher-threads",
        type=int,
        default=None,
        help="llm_label.local_threads for this run (1 on a machine shared with other jobs)",
    )
    parser.add_argument(
        "--fresh", action="store_true", help="start from an empty workdir (default: rerun what changed)"
    )
    parser.add_argument(
        "--report-only", action="store_true", help="score what the last run in workdir left, run nothing"
    )
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    with open(args.source, encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    pipeline_rows, extra = take_slice(rows, args.headlines, args.extra)
    started = time.perf_counter()
    if not args.report_only:
        scratch_copy(args.workdir, args.fresh)
        dated = assign_dates(pipeline_rows, load_params(SplitParams, args.workdir / "params.yaml"))
        write_jsonl(args.workdir / HEADLINES_FILE, [{"text": r["text"], "date": r["date"]} for r in dated])
        write_jsonl(
            args.workdir / LABELS_FILE, [{"text": r["text"], "date": r["date"], "spans": r["spans"]} for r in dated]
        )
        write_jsonl(args.workdir / EXTRA_FILE, [{"text": r["text"], "spans": r["spans"]} for r in extra])
        point_params(args.workdir, args.teacher_threads)
        commit(args.workdir)
        run_pipeline(args.workdir)
    result = report(args.workdir, extra, None if args.report_only else time.perf_counter() - started)
    args.out.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    print(
        json.dumps(
            {k: result[k] for k in ("headlines", "train", "valid", "test")}
            | {name: result[name]["f1"] for name in ("teacher", *MODELS)}
        )
    )


if __name__ == "__main__":
    main()
