"""Students that use the whole feed: at a small review budget, which recipe makes the most of the rest?

On a run's reviewed splits (a real-headline run: --run DIR), `budget` train headlines, chosen at random (seeded),
keep their human label; the rest of train is the feed no one reviewed, with only the teacher's answers. GLiNER is
trained four ways, each scored on the human-labelled test split with the same seeds and splits:

  human       the budget's human labels only
  keep        plus the teacher's labels of the rest (finetune's `unreviewed: keep`)
  pretrain    first trained on the teacher's labels of every train headline, then fine-tuned on the human labels
              from that checkpoint (the same recipe both times: finetune's `unreviewed: pretrain`)
  self_train  the `human` model labels the rest at the threshold that gives it the best validation F1, and those
              spans join the human labels (one round)

Every model picks its best epoch on the human-labelled valid split, as the finetune stage does. Each recipe and
seed is kept in the run's directory (experiments/) as it finishes, so a rerun trains only what it lacks. Writes
metrics/<name>.json (means over seeds, with spread) and metrics/<name>.csv (one row a recipe and seed).

  python -m scripts.whole_feed --run DIR [--budget 300] [--seeds 0 1 2] [--recipes human keep pretrain self_train]
  python -m scripts.whole_feed --table     # the table of metrics/whole_feed.json, as docs/real-headlines.md has it

Training dominates: on 1,200 real train headlines, about 21 minutes a seed on 2 cores (keep and self_train each
train on the whole train split, pretrain on it and then on the budget).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from statistics import mean

import polars as pl

from scripts.student_runs import (
    ROOT,
    Records,
    Run,
    over_seeds,
    score_folder,
    seed_cell,
    trained,
    training_records,
)
from stages.core.cli import setup_logging
from stages.core.io import log, write_csv, write_json
from stages.core.metrics import entity_scores
from stages.core.schema import seeded_rank
from stages.labels.records import HUMAN_LABELLED, LLM, labelled_records
from stages.students.registry import STUDENTS

RECIPES = ("human", "keep", "pretrain", "self_train")
DESCRIPTIONS = {
    "human": "(a) human labels only",
    "keep": "(b) plus the teacher's labels of the rest",
    "pretrain": "(c) pretrained on the teacher's labels, fine-tuned on the human ones",
    "self_train": "(d) self-trained: its own confident spans on the rest join",
}
FIELDS = ["recipe", "seed", "budget", "train_records", "f1", "f1_ci_low", "f1_ci_high", "precision", "recall"]
FIELDS += ["threshold", "seconds"]  # self_train's chosen threshold; seconds on this machine
STUDENT = "gliner"
THRESHOLDS = tuple(round(0.05 * i, 2) for i in range(2, 19))  # 0.10 .. 0.90: self-training's candidates
SCAN_THRESHOLD = THRESHOLDS[0]  # predict once at the lowest, keep spans by score (GLiNER's greedy decoding
# picks spans by score, so the spans above t at a low threshold are the spans it decodes at t)


def budget_ids(train: pl.DataFrame, budget: int, seed: int) -> set[str]:
    """The human-labelled train headlines a reviewer labels: the first `budget` in a seeded order (nested: a
    larger budget holds a smaller one)."""
    reviewable = train.filter(HUMAN_LABELLED)["id"].to_list()
    return set(sorted(reviewable, key=lambda i: seeded_rank(seed, i))[:budget])


def above(spans: list[dict], threshold: float) -> list[dict]:
    return [{k: s[k] for k in ("start", "end", "text")} for s in spans if s["score"] >= threshold]


def best_threshold(gold: Records, scored: list[list[dict]]) -> float:
    """The candidate threshold whose spans (of predictions carrying scores) give the best F1 against gold; the
    lowest such threshold on a tie."""
    f1 = {t: entity_scores([r["spans"] for r in gold], [above(p, t) for p in scored])["f1"] for t in THRESHOLDS}
    return max(THRESHOLDS, key=lambda t: (f1[t], -t))


def pseudo_labels(rest: Records, scored: list[list[dict]], threshold: float) -> Records:
    """The unreviewed headlines with the student's own spans above threshold as labels."""
    return [r | {"spans": above(p, threshold), "label_source": LLM} for r, p in zip(rest, scored, strict=True)]


def recipe_runs(run: Run, splits: dict[str, pl.DataFrame], budget: int, seed: int, recipes: list[str]) -> list[dict]:
    """One row per recipe: test scores and what it trained on, for one seed (each kept in the run's directory, so
    a stopped or repeated experiment trains only what it lacks)."""
    training = run.training(STUDENT, seed)
    valid, test = run.validation(splits["valid"]), run.human_test(splits["test"])
    reviewed = budget_ids(splits["train"], budget, seed)
    human = training_records(splits["train"], reviewed, "drop")
    rest = [r for r in training_records(splits["train"], reviewed, "keep") if r["label_source"] == LLM]

    def tested(model: Path, records: int, **extra) -> dict:
        return {"train_records": records, **score_folder(run, STUDENT, model, {"test": test})["test"], **extra}

    def human_only() -> dict:
        with trained(STUDENT, training, human, valid) as model:
            return tested(model, len(human))

    def keep() -> dict:
        with trained(STUDENT, training, human + rest, valid) as model:
            return tested(model, len(human) + len(rest))

    def pretrain() -> dict:
        with trained(STUDENT, training, human, valid, labelled_records(splits["train"], "teacher")) as model:
            return tested(model, len(human))

    def self_train() -> dict:
        with trained(STUDENT, training, human, valid) as alone:
            predict = STUDENTS[STUDENT].load(alone, False, {"threshold": SCAN_THRESHOLD})
            threshold = best_threshold(valid, predict([r["text"] for r in valid], 32))
            labelled = pseudo_labels(rest, predict([r["text"] for r in rest], 32), threshold)
        with trained(STUDENT, training, human + labelled, valid) as model:
            return tested(model, len(human) + len(labelled), threshold=threshold)

    computes = {"human": human_only, "keep": keep, "pretrain": pretrain, "self_train": self_train}
    depends_on = {"training": training.model_dump(), "decode": run.decode(STUDENT), "budget": budget}
    rows = []
    for recipe in recipes:
        result = run.kept(f"whole-feed-{recipe}-seed{seed}", depends_on | {"recipe": recipe}, computes[recipe])
        rows.append({"recipe": recipe, "seed": seed, "budget": len(human)} | result)
        log.info("whole feed: %s seed %d -> test F1 %.3f (%d s)", recipe, seed, result["f1"], result["seconds"])
    return rows


def summary(rows: list[dict], recipes: list[str]) -> dict:
    """Per recipe: its spread over seeds, its train records, and its gain over `human` seed by seed (the same
    budget's headlines: mean, lowest, highest), where human-only ran too."""
    f1 = {(r["recipe"], r["seed"]): r["f1"] for r in rows}
    result = {}
    for recipe in recipes:
        runs = [r for r in rows if r["recipe"] == recipe]
        result[recipe] = over_seeds(runs) | {"train_records": max(r["train_records"] for r in runs)}
        gains = [round(r["f1"] - f1[("human", r["seed"])], 4) for r in runs if ("human", r["seed"]) in f1]
        if gains and recipe != "human":
            result[recipe]["gain_over_human"] = {"mean": round(mean(gains), 4), "min": min(gains), "max": max(gains)}
        if recipe == "self_train":
            result[recipe]["thresholds"] = [r["threshold"] for r in runs]
    return result


def markdown_table(result: dict) -> str:
    """The whole-feed table of docs/real-headlines.md: each recipe's test F1 over seeds, one run's CI, P/R and its
    gain over human labels alone."""
    seeds = ", ".join(str(s) for s in result["seeds"])
    lines = [
        f"GLiNER at {result['budget']} human-labelled train titles of {result['train_headlines']:,}; the rest carry "
        f"only the teacher's answers. Test: {result['test_human_labelled']} human-labelled titles (the teacher's own "
        f"F1 {result['teacher']['f1']:.3f}). Mean over seeds {seeds} ± standard deviation [lowest, highest]; the "
        "gain is against human labels only with the same seed, [lowest, highest].",
        "",
        "| recipe | trains on | test F1 | one run's 95% CI | P / R | gain over human labels only |",
        "|---|---|---|---|---|---|",
    ]
    budget, rest = result["budget"], result["train_headlines"] - result["budget"]
    trains_on = {
        "human": f"{budget:,} human",
        "keep": f"{budget:,} human + {rest:,} teacher",
        "pretrain": f"{budget + rest:,} teacher, then {budget:,} human",
        "self_train": f"{budget:,} human + {rest:,} its own",
    }
    for recipe, figures in result["recipes"].items():
        gain = figures.get("gain_over_human")
        gain_cell = "" if gain is None else f"{gain['mean']:+.3f} [{gain['min']:+.3f}, {gain['max']:+.3f}]"
        lines.append(
            f"| {DESCRIPTIONS[recipe]} | {trains_on[recipe]} | {seed_cell(figures)} | "
            f"[{figures['one_run_ci_low']:.3f}, {figures['one_run_ci_high']:.3f}] | "
            f"{figures['precision_mean']:.3f} / {figures['recall_mean']:.3f} | {gain_cell} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=ROOT, help="the pipeline run's directory (default: this tree)")
    parser.add_argument("--budget", type=int, default=300, help="train headlines with a human label")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--recipes", nargs="+", default=list(RECIPES), choices=RECIPES)
    parser.add_argument("--name", default="whole_feed", help="metrics/<name>.json and .csv")
    parser.add_argument("--table", action="store_true", help="print the table of metrics/<name>.json, run nothing")
    args = parser.parse_args()
    out = ROOT / "metrics" / f"{args.name}.json"
    if args.table:
        print(markdown_table(json.loads(out.read_text())), end="")
        return
    setup_logging()
    run = Run(args.run)
    splits = run.splits()
    rows = [row for seed in args.seeds for row in recipe_runs(run, splits, args.budget, seed, args.recipes)]
    rows.sort(key=lambda r: (RECIPES.index(r["recipe"]), r["seed"]))
    test = run.human_test(splits["test"])
    result = {
        "budget": args.budget,
        "seeds": args.seeds,
        "train_headlines": splits["train"].height,
        "test_human_labelled": len(test),
        "teacher": run.teacher_score(splits["test"], test),
        "recipes": summary(rows, args.recipes),
    }
    write_json(out, result)
    write_csv(ROOT / "metrics" / f"{args.name}.csv", rows, FIELDS)
    print(json.dumps({recipe: figures["f1_mean"] for recipe, figures in result["recipes"].items()}))


if __name__ == "__main__":
    main()
