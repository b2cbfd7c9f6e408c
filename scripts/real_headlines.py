"""Real headlines: the whole pipeline on real financial news that no one here wrote, scored against its humans.

Takes SEntFiN's titles (data/real_headlines/: real Indian and international headlines with human entity
annotations, MIT, see its README) and runs `dvc repro` in a scratch copy of this working tree as a user would
on their own data: the titles as `fetch.path`, their annotations as an existing human-label file
(`argilla_review.label_files`), every other param as params.yaml has it (but `llm_label.limit: null`, so the
teacher labels every title). With --extra, further titles of the file are an `evaluate.extra_test_sets` file.

SEntFiN has no dates, and the pipeline splits by date: each headline gets a synthetic date, deterministically.
Headlines are ordered by a hash of their id; the first `--headlines` form the slice, the next `--extra` the
extra test set. Within the slice the first 80% get train dates, the next 10% valid and the last 10% test (the
case study's proportions): the i-th headline of a split is dated i days after its `split.ranges` start (wrapping
inside the range).

Seeds: the pipeline trains each student with its params seed; this script trains it again with every other
--seeds value on the same splits, by the harness (scripts/student_runs.py) on the records its finetune stage
takes, exports each to int8 ONNX, and reports each model's mean over seeds with the spread. A seed's scores are
kept in the workdir (experiments/), under a digest of what they depend on, so a rerun trains only what changed.

SEntFiN's guidelines count sectors, indices, commodities and regulators too ("IT stocks", "Nifty", "gold"),
which a company extractor is not asked for, so every model is scored three ways: on all spans (exact, as evaluate
does) and on capitalised spans only (gold and predicted spans whose first character is not a lowercase
letter: drops "gold", "rupee", "realty stocks"; keeps "3M", "Nifty", "Sebi"), and "company_only":
capitalised spans that data/real_headlines/not_companies.yaml does not list as an index, market, sector,
commodity, currency, regulator or place (what our review guidelines say is no company). The last two views drop
such spans from gold and predictions alike: a model is neither credited nor charged for them.
The company-only reference is also scored as if it were a model ("company_only_reference"): its all-spans F1 is
the most a model that names companies only, and nothing SEntFiN calls a sector or index, can score there.
Writes metrics/real_headlines.json. About 100 minutes on 2 cores: the local teacher labels ~1.2 headlines/s, and
each seed trains both students on 1,200 titles.

  python -m scripts.real_headlines [--headlines 1500] [--extra 0] [--seeds 0 1 2] [--workdir DIR]
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
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import yaml

from scripts.student_runs import Run, over_seeds, score_folder, seed_cell, train_and_score
from scripts.worktree import copy_worktree
from stages.core.cli import setup_logging
from stages.core.io import log
from stages.core.metrics import score
from stages.core.params import load_params
from stages.core.schema import SPLITS
from stages.core.stage_params import Bootstrap, SplitParams
from stages.labels.records import human_records, labelled_records
from stages.students.finetune import stage_records

ROOT = Path(__file__).resolve().parents[1]

SOURCE = ROOT / "data/real_headlines/sentfin_dev.jsonl"
NOT_COMPANIES = ROOT / "data/real_headlines/not_companies.yaml"
OUT = ROOT / "metrics/real_headlines.json"
SHARES = (("train", 0.8), ("valid", 0.1), ("test", 0.1))
HEADLINES_FILE = "data/real_headlines/headlines.jsonl"  # inside the scratch copy: fetch.path
LABELS_FILE = "data/real_headlines/reviewer_labels.jsonl"  # the slice's annotations as reviewers' labels
EXTRA_FILE = "data/test_sets/sentfin_rest.jsonl"  # the rest of the slice: an extra test set
PIPELINE_SECONDS = "pipeline_seconds.txt"  # the workdir's last `dvc repro`, as this script timed it
STUDENT_NAMES = ("gliner", "spanmarker")
MODELS = (*STUDENT_NAMES, *(f"{name}_export" for name in STUDENT_NAMES))
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


def point_params(workdir: Path, teacher_threads: int | None, extra: bool) -> None:
    """The user's-own-data params: fetch the slice, take its annotations as reviewers', score the extra set (if any)
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
    params["evaluate"]["extra_test_sets"] = [EXTRA_FILE] if extra else []
    (workdir / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def run_pipeline(workdir: Path) -> None:
    env = dict(
        os.environ,
        HF_HUB_OFFLINE=os.environ.get("HF_HUB_OFFLINE", "1"),
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    )
    # evaluate and what it depends on: stages after it (tagging the whole feed) add nothing to this run
    subprocess.run([str(Path(sys.executable).parent / "dvc"), "repro", "evaluate"], cwd=workdir, env=env, check=True)


def views_scorer(bootstrap: Bootstrap, not_companies: NotCompanies) -> Callable[[list[dict], list[list[dict]]], dict]:
    """The harness's scorer for this run: every view's figures of predictions against records."""
    return lambda records, predicted: scores(records, predicted, bootstrap, not_companies)


def fixed_scores(records: list[dict], teacher: list[list[dict]] | None, scorer, not_companies: NotCompanies) -> dict:
    """The teacher's labels (where given) and CEILING, the company-only reference itself as predictions, which
    bounds what a model that names companies only scores on all spans: neither depends on a seed."""
    result = {"teacher": scorer(records, teacher)} if teacher is not None else {}
    return result | {CEILING: scorer(records, [company_only(r["spans"], not_companies) for r in records])}


def seed_scores(
    run: Run, splits: dict[str, pl.DataFrame], student: str, seed: int, sets: dict[str, list[dict]], scorer
) -> dict:
    """{"model": {set: views}, "export": {set: views}} of a student trained with a seed: the pipeline's own
    folders for the params' seed, else trained here on the records its finetune stage takes (kept in the run's
    directory with the seconds that took, under everything the scores depend on)."""
    if seed == run.training(student).seed:
        return {
            "model": score_folder(run, student, run.paths[student], sets, scorer),
            "export": score_folder(run, student, run.paths[f"{student}_export"], sets, scorer),
        }
    training = run.training(student, seed)
    train, pretrain_on = stage_records(splits["train"], training.unreviewed)
    depends_on = {
        "training": training.model_dump(),
        "decode": run.decode(student),
        "not_companies": hashlib.sha256(NOT_COMPANIES.read_bytes()).hexdigest(),
        "sets": sets,
    }
    return run.kept(
        f"{student}-seed{seed}",
        depends_on,
        lambda: train_and_score(
            run, student, training, train, run.validation(splits["valid"]), sets, True, scorer, pretrain_on
        ),
    )


def seed_table(by_seed: dict[str, dict[int, dict]], test_set: str) -> dict:
    """{view: {model: over_seeds}} of each model's per-seed scores on one set."""
    return {
        view: {
            name: over_seeds([runs[seed][test_set][view] for seed in sorted(runs)]) for name, runs in by_seed.items()
        }
        for view in ("all", *VIEWS)
    }


def report(workdir: Path, extra: list[dict], seeds: list[int]) -> dict:
    run = Run(workdir)
    splits = run.splits()
    not_companies = NotCompanies.from_yaml(yaml.safe_load(NOT_COMPANIES.read_text()))
    scorer = views_scorer(run.bootstrap, not_companies)
    records = human_records(labelled_records(splits["test"]))
    sets = {"test": records} | ({"extra": extra} if extra else {})
    teacher_spans = dict(zip(splits["test"]["id"].to_list(), splits["test"]["teacher_spans"].to_list()))
    fixed = fixed_scores(records, [teacher_spans[r["id"]] or [] for r in records], scorer, not_companies)
    by_seed: dict[str, dict[int, dict]] = {}  # model -> seed -> set -> view -> scores
    seconds_by_seed: dict[str, dict[str, int]] = {}
    for student in STUDENT_NAMES:
        for seed in seeds:
            log.info("real headlines: %s, seed %d", student, seed)
            result = seed_scores(run, splits, student, seed, sets, scorer)
            by_seed.setdefault(student, {})[seed] = result["model"]
            by_seed.setdefault(f"{student}_export", {})[seed] = result["export"]
            if "seconds" in result:
                seconds_by_seed.setdefault(student, {})[str(seed)] = result["seconds"]
    params_seed = {name: run.training(name.removesuffix("_export")).seed for name in MODELS}
    on_test = fixed | {name: by_seed[name][params_seed[name]]["test"] for name in MODELS}
    metrics = json.loads((workdir / "metrics/metrics.json").read_text())
    sizes = {k: v for k, v in json.loads((workdir / "metrics/split.json").read_text()).items() if k in SPLITS}
    for name in ("teacher", *MODELS):  # the pipeline's own figures must be the ones recomputed here
        if abs(metrics[name]["f1"] - on_test[name]["all"]["f1"]) > 1e-9:
            raise SystemExit(f"{name}: evaluate says F1 {metrics[name]['f1']}, recomputed {on_test[name]['all']['f1']}")
    result = {
        "source": "SEntFiN 1.0 (MIT), data/real_headlines/sentfin_dev.jsonl",
        "headlines": sum(sizes.values()),
        **sizes,
        "test_human_labelled": len(records),
        "reference": metrics["reference"],
        **{name: on_test[name]["all"] for name in on_test},
        **{view: {name: on_test[name][view] for name in on_test} for view in VIEWS},
        "seeds": seeds,
        "over_seeds": seed_table(by_seed, "test"),
        "f1_by_seed": {
            name: {str(seed): by_seed[name][seed]["test"]["all"]["f1"] for seed in seeds} for name in MODELS
        },
        # the last `dvc repro` this script ran there (null: none did), this machine
        "pipeline_seconds": int(timing.read_text()) if (timing := workdir / PIPELINE_SECONDS).is_file() else None,
        "seed_seconds": seconds_by_seed,  # the seeds trained here (not the pipeline's own)
    }
    if extra:
        on_extra = fixed_scores(extra, None, scorer, not_companies) | {
            name: by_seed[name][params_seed[name]]["extra"] for name in MODELS
        }
        result["extra_test_set"] = {
            "headlines": len(extra),
            **{name: on_extra[name]["all"] for name in on_extra},
            **{view: {name: on_extra[name][view] for name in on_extra} for view in VIEWS},
            "over_seeds": seed_table(by_seed, "extra"),
        }
    return result


LABELS = {
    "teacher": "Teacher LLM (labels)",
    "gliner": "GLiNER fine-tuned",
    "gliner_export": "GLiNER export (int8 ONNX)",
    "spanmarker": "SpanMarker fine-tuned",
    "spanmarker_export": "SpanMarker export (int8 ONNX)",
    CEILING: "Company-only reference (ceiling)",
}


def markdown_table(result: dict) -> str:
    """The seed table of docs/real-headlines.md: each student's mean F1 over seeds ± its standard deviation
    [lowest, highest] per view, the mean 95% CI of one run, and P/R; the teacher and the ceiling are one figure."""
    seeds = ", ".join(str(s) for s in result["seeds"])
    lines = [
        f"Real headlines: {result['headlines']:,} SEntFiN titles, {result['train']:,} train / {result['valid']:,} "
        f"valid / {result['test']:,} test by synthetic date, all human-labelled; reference: the human labels of the "
        f"{result['test_human_labelled']} test titles. Students: mean over seeds {seeds} ± standard deviation "
        "[lowest, highest].",
        "",
        "| model | test F1, all spans | one run's 95% CI | capitalised | company-only | P / R (all spans) |",
        "|---|---|---|---|---|---|",
    ]
    for name, label in LABELS.items():
        if name in MODELS:
            by_view = {view: result["over_seeds"][view][name] for view in ("all", *VIEWS)}
            cells = [seed_cell(by_view[view]) for view in ("all", *VIEWS)]
            ci = f"[{by_view['all']['one_run_ci_low']:.3f}, {by_view['all']['one_run_ci_high']:.3f}]"
            pr = f"{by_view['all']['precision_mean']:.3f} / {by_view['all']['recall_mean']:.3f}"
        else:
            cells = [f"{result[name]['f1']:.3f}", *(f"{result[view][name]['f1']:.3f}" for view in VIEWS)]
            ci = f"[{result[name]['f1_ci_low']:.3f}, {result[name]['f1_ci_high']:.3f}]"
            pr = f"{result[name]['precision']:.3f} / {result[name]['recall']:.3f}"
        lines.append(f"| {label} | {cells[0]} | {ci} | {cells[1]} | {cells[2]} | {pr} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=SOURCE, help="JSONL of {id, text, spans}")
    parser.add_argument("--headlines", type=int, default=1500, help="headlines the pipeline runs on")
    parser.add_argument("--extra", type=int, default=0, help="further headlines scored as an extra test set")
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
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="train each student with each")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--table", action="store_true", help="print the table of the --out file, run nothing")
    args = parser.parse_args()
    setup_logging()
    if args.table:
        print(markdown_table(json.loads(args.out.read_text())), end="")
        return
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
        if extra:
            write_jsonl(args.workdir / EXTRA_FILE, [{"text": r["text"], "spans": r["spans"]} for r in extra])
        point_params(args.workdir, args.teacher_threads, bool(extra))
        commit(args.workdir)
        run_pipeline(args.workdir)
        (args.workdir / PIPELINE_SECONDS).write_text(f"{round(time.perf_counter() - started)}\n")
    result = report(args.workdir, extra, args.seeds)
    args.out.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    print(
        json.dumps(
            {k: result[k] for k in ("headlines", "train", "valid", "test")}
            | {name: result[name]["f1"] for name in ("teacher", *MODELS)}
        )
    )


if __name__ == "__main__":
    main()
