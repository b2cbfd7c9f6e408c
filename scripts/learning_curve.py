"""Learning curve: does review make the student better than its teacher?

Trains a student on n training headlines labelled by the teacher and on the same n headlines labelled
by humans, for several n, and scores every model (and the teacher) on the human-labelled test split with
the bootstrap CI that `evaluate` uses. Reads what the last `dvc repro` wrote (the reviewed splits, params.yaml)
in this working tree, or in another run's directory (--run: a real-headline run's scratch copy); writes
metrics/<name>.csv (DVC plot data: `dvc plots show metrics/learning_curve.csv`) and metrics/<name>.png, where
--name is learning_curve by default.

  python -m scripts.learning_curve [--sizes 50 100 200 all] [--students gliner spanmarker] [--seeds 0 1]
                                   [--run DIR --name real_learning_curve]
  python -m scripts.learning_curve --name real_learning_curve --table   # its table, as docs/ has it

Many trainings, so a script rather than a stage: GLiNER at the demo's sizes takes about 6 minutes on 2 cores. Each
training's scores are kept in the run's directory (experiments/) as it finishes: a rerun trains only what it lacks.
"""

from __future__ import annotations

import argparse
from functools import partial
from pathlib import Path
from statistics import mean

import polars as pl

from scripts.student_runs import ROOT, Run, over_seeds, plot_f1, seed_cell, train_and_score
from stages.core.cli import setup_logging
from stages.core.io import log, write_csv
from stages.labels.records import HUMAN_LABELLED, labelled_records, seeded_subset
from stages.students.registry import STUDENTS

FIELDS = ["student", "labels", "n", "seed", "f1", "f1_ci_low", "f1_ci_high", "precision", "recall", "seconds"]


def paired_pool(train: pl.DataFrame) -> dict[str, list[dict]]:
    """The training headlines that have both a human label and a valid teacher answer, as records with each
    label: the two curves then differ in who labelled, never in which headlines."""
    both = train.filter(HUMAN_LABELLED & pl.col("valid"))
    return {"human": labelled_records(both, "reviewed"), "teacher": labelled_records(both, "teacher")}


def training_sets(pool: dict[str, list[dict]], sizes: list[int | None], seed: int) -> list[tuple[str, int, list[dict]]]:
    """(labels, n, records) for every size; the same seeded headlines for both label sources."""
    counts = sorted({len(seeded_subset(pool["human"], size, seed)) for size in sizes})  # 200 of 155 is all 155
    return [(labels, n, seeded_subset(pool[labels], n, seed)) for n in counts for labels in ("teacher", "human")]


def curve_point(run: Run, student: str, labels: str, records: list[dict], seed: int, valid, test) -> dict:
    """The test scores (and seconds) of a student trained on one point's records, kept in the run's directory."""
    training = run.training(student, seed)
    kept = run.kept(
        f"learning-curve-{student}-{labels}-n{len(records)}-seed{seed}",
        {"training": training.model_dump(), "decode": run.decode(student), "labels": labels, "n": len(records)},
        partial(train_and_score, run, student, training, records, valid, {"test": test}),
    )
    return kept["test"] | {"seconds": kept["seconds"]}


def plot(rows: list[dict], teacher_f1: float, path: Path) -> None:
    series = []
    for (student, labels), style in zip(sorted({(r["student"], r["labels"]) for r in rows}), ["o-", "s--"] * 4):
        by_n: dict[int, list[dict]] = {}
        for r in rows:
            if r["student"] == student and r["labels"] == labels:
                by_n.setdefault(r["n"], []).append(r)
        n = sorted(by_n)  # with several seeds: the mean of each figure over seeds
        f1, low, high = (
            [sum(r[k] for r in by_n[x]) / len(by_n[x]) for x in n] for k in ("f1", "f1_ci_low", "f1_ci_high")
        )
        series.append(
            {"label": f"{student}, {labels} labels", "x": n, "f1": f1, "low": low, "high": high, "style": style}
        )
    plot_f1(
        path,
        "Students trained on teacher vs human labels (same headlines, 95% CI)",
        "training headlines",
        series,
        teacher_f1,
    )


def markdown_table(rows: list[dict]) -> str:
    """The learning curve as a table: per student and size, F1 with human and with teacher labels over seeds, and
    what human labels add seed by seed (the same headlines: mean [lowest, highest])."""
    f1 = {(r["student"], r["labels"], r["n"], r["seed"]): r["f1"] for r in rows}
    seeds = sorted({r["seed"] for r in rows})
    lines = [
        f"Mean test F1 over seeds {', '.join(str(s) for s in seeds)} ± standard deviation [lowest, highest]; the "
        "same n headlines for both label sources with each seed; one run's 95% CI is for human labels.",
        "",
        "| student | n | human labels | teacher labels | human − teacher [lowest, highest] | one run's 95% CI |",
        "|---|---|---|---|---|---|",
    ]
    for student, n in sorted({(r["student"], r["n"]) for r in rows}):
        by_labels = {
            labels: over_seeds([r for r in rows if (r["student"], r["labels"], r["n"]) == (student, labels, n)])
            for labels in ("human", "teacher")
        }
        gains = [f1[(student, "human", n, s)] - f1[(student, "teacher", n, s)] for s in seeds]
        human = by_labels["human"]
        lines.append(
            f"| {student} | {n:,} | {seed_cell(human)} | {seed_cell(by_labels['teacher'])} | "
            f"{mean(gains):+.3f} [{min(gains):+.3f}, {max(gains):+.3f}] | "
            f"[{human['one_run_ci_low']:.3f}, {human['one_run_ci_high']:.3f}] |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["50", "100", "200", "all"])
    parser.add_argument("--students", nargs="+", default=["gliner"], choices=sorted(STUDENTS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--run", type=Path, default=ROOT, help="the pipeline run's directory (default: this tree)")
    parser.add_argument("--name", default="learning_curve", help="metrics/<name>.csv and .png")
    parser.add_argument("--table", action="store_true", help="print the table of metrics/<name>.csv, run nothing")
    args = parser.parse_args()
    csv_out, png_out = (ROOT / "metrics" / f"{args.name}.{suffix}" for suffix in ("csv", "png"))
    if args.table:
        print(markdown_table(pl.read_csv(csv_out).to_dicts()), end="")
        return
    setup_logging()
    sizes = [None if s == "all" else int(s) for s in args.sizes]
    run = Run(args.run)
    splits = run.splits()
    test, valid, pool = run.human_test(splits["test"]), run.validation(splits["valid"]), paired_pool(splits["train"])
    teacher = run.teacher_score(splits["test"], test)
    rows = []
    for name in args.students:
        for seed in args.seeds:
            for labels, n, records in training_sets(pool, sizes, seed):
                log.info("learning curve: %s on %d headlines with %s labels (seed %d)", name, n, labels, seed)
                result = curve_point(run, name, labels, records, seed, valid, test)
                rows.append({"student": name, "labels": labels, "n": n, "seed": seed} | result)
                log.info(
                    "learning curve: -> F1 %.3f [%.3f, %.3f]", result["f1"], result["f1_ci_low"], result["f1_ci_high"]
                )
    rows.sort(key=lambda r: (r["student"], r["labels"], r["n"], r["seed"]))
    write_csv(csv_out, rows, FIELDS)
    plot(rows, teacher["f1"], png_out)
    print(
        f"{len(rows)} points on {len(test)} human-labelled test headlines (teacher F1 {teacher['f1']:.3f}) -> "
        f"{csv_out.relative_to(ROOT)}, {png_out.relative_to(ROOT)}"
    )


if __name__ == "__main__":
    main()
