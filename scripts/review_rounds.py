"""Does review that learns between rounds reach full review's F1 with half the reviews?

On a run whose every headline has a human label (a real-headline run: --run DIR), reviewers are simulated: a train
headline's human label is revealed only once it is "reviewed"; valid and test are reviewed whole, as argilla_push
sends them. At equal review counts k, GLiNER is trained on what each way of reviewing gives and scored on the
human-labelled test split, with the same seeds:

  random      k train headlines in a seeded random order; the student trains on their human labels (the learning
              curve's points: scripts/learning_curve.py, kept once for both)
  one_shot    the scout's top k before any review (its priority, as the pipeline first sends it)
  rounds      rounds of --batch through the pipeline's own functions: the scout learns from the train reviews so
              far (stages/scout.py), argilla_review's calibration and auto-accept mark the unreviewed labels it
              may take unseen, and its queue picks the next batch by expected errors (stages/review/); the student
              trains on the reviewed labels and the auto-accepted ones
  everything  every train headline reviewed (the case study's way; the learning curve's largest point)

Every student picks its best epoch on the human-labelled valid split, as the finetune stage does, and trains on
human (and, in rounds, auto-accepted) labels only: finetune's `unreviewed: drop`, so each way differs only in which
labels it bought. Each piece (a scout's scores, a student's scores) is kept in the run's directory (experiments/)
as it finishes, so a rerun computes only what it lacks. Writes metrics/<name>.json and .csv and a plot.

  python -m scripts.review_rounds --run DIR [--batch 300] [--rounds 2] [--seeds 0 1 2]
  python -m scripts.review_rounds --table     # the table of metrics/review_rounds.json, as the docs have it

On 1,200 real train titles a scout (3 folds, 3 epochs) takes about 7 minutes on 2 cores and a student 1.5 to 5:
about 40 minutes a seed.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from statistics import mean, stdev

import polars as pl

from scripts.learning_curve import curve_point, paired_pool
from scripts.student_runs import ROOT, Run, over_seeds, plot_f1, score_folder, seed_cell, trained
from stages.core.cli import setup_logging
from stages.core.io import log, read_table, write_csv, write_json
from stages.core.params import load_params
from stages.core.schema import SPLITS, seeded_rank
from stages.core.stage_params import ReviewParams, ScoutParams
from stages.labels.records import HUMAN, LLM, NONE, labelled_records, seeded_subset, unreviewed_rule
from stages.review.scouting import cross_fitted_spans, priorities, scout_recipe
from stages.review.tables import auto_accept, judged_labels, review_queue
from stages.students.config import FinetuneGlinerParams

POLICIES = ("random", "one_shot", "rounds", "everything")
STUDENT = "gliner"
FIELDS = ["policy", "seed", "reviews", "accepted", "train_records", "f1", "f1_ci_low", "f1_ci_high"]
# What the calibration on the human labels so far says (rounds only): the highest precision target auto-accept could
# meet per kind, and the scout span score's ECE before and after calibration
EVIDENCE = ["supported_span_precision", "supported_no_other_precision", "span_ece_raw", "span_ece_calibrated"]
FIELDS += ["precision", "recall", "accepted_span_precision", "seconds", *EVIDENCE]
SCOUT_COLUMNS = ["id", "text", "valid", "teacher_spans", "hallucinated", "agreement"]


def review_state(splits: dict[str, pl.DataFrame], reviewed: set[str]) -> dict[str, pl.DataFrame]:
    """The splits as argilla_review leaves them when these train headlines (and all of valid and test) have their
    human label: the rest of train keeps the teacher's (llm, or none for an invalid answer)."""
    state = {}
    for name, frame in splits.items():
        if name != "train":  # reviewed whole: every human label there is a review
            state[name] = frame.with_columns(reviewed=pl.col("label_source") == HUMAN)
            continue
        seen = pl.col("id").is_in(sorted(reviewed))
        state[name] = frame.with_columns(
            reviewed=seen,
            label_spans=pl.when(seen).then(pl.col("label_spans")).otherwise(pl.col("teacher_spans")),
            label_source=pl.when(seen)
            .then(pl.lit(HUMAN))
            .otherwise(pl.when(pl.col("valid")).then(pl.lit(LLM)).otherwise(pl.lit(NONE))),
        )
    return state


class Simulation:
    """One run's splits and settings, and the pieces every policy shares (kept in the run's directory)."""

    def __init__(self, run: Run, batch: int):
        self.run, self.batch = run, batch
        self.splits = {
            name: frame.with_columns(agreement=pl.lit(None, pl.Float64)) for name, frame in run.splits().items()
        }
        self.scout_rows = [
            r | {"split": name}
            for name in SPLITS
            for r in read_table(run.paths["split"] / f"{name}.parquet", SCOUT_COLUMNS).sort("id").iter_rows(named=True)
        ]
        # the shipped review rules (this tree's params: the run may predate them), one round = `batch` headlines
        self.review = load_params(ReviewParams, ROOT / "params.yaml").model_copy(update={"batch_size": batch})
        self.scout = load_params(ScoutParams, run.root / "params.yaml")
        self.valid = run.validation(self.splits["valid"])
        self.test = run.human_test(self.splits["test"])
        self.pool = paired_pool(self.splits["train"])["human"]
        self.human_spans = {r["id"]: r["label_spans"] or [] for r in self.splits["train"].iter_rows(named=True)}

    def scores(self, reviewed: set[str], seed: int) -> dict[str, dict]:
        """The priority table the scout stage writes when these train headlines are reviewed, by id."""
        params = self.scout.model_copy(update={"seed": seed})

        def compute() -> dict:
            gliner = scout_recipe(params, load_params(FinetuneGlinerParams, self.run.root / "params.yaml"))
            human = {i: self.human_spans[i] for i in sorted(reviewed)}
            table = priorities(
                self.scout_rows,
                cross_fitted_spans(self.scout_rows, human, params, gliner),
                params.weights.model_dump(),
                seed,
            )
            return {"rows": table.select("id", "priority", "teacher_span_scores", "missed_score").to_dicts()}

        depends_on = {"scout": params.model_dump(), "reviewed": sorted(reviewed)}
        kept = self.run.kept(f"review-rounds-scout-{len(reviewed)}-seed{seed}", depends_on, compute)
        return {row["id"]: row for row in kept["rows"]}

    def student(self, policy: str, reviewed: set[str], seed: int, scores: dict[str, dict] | None = None) -> dict:
        """Test scores of GLiNER trained on the reviewed labels (and, given the scout's scores, the labels
        argilla_review's auto-accept takes unseen), with what it trained on."""
        state = review_state(self.splits, reviewed)
        calibration: dict = {}
        if scores is not None:
            judged = {name: judged_labels(frame, scores) for name, frame in state.items()}
            state, calibration, _ = auto_accept(state, judged, self.review)
        records = unreviewed_rule(labelled_records(state["train"]), "drop")
        training = self.run.training(STUDENT, seed)

        def compute() -> dict:
            with trained(STUDENT, training, records, self.valid) as model:
                return score_folder(self.run, STUDENT, model, {"test": self.test})["test"]

        depends_on = {
            "training": training.model_dump(),
            "decode": self.run.decode(STUDENT),
            "records": sorted((r["id"], r["label_source"]) for r in records),
        }
        result = self.run.kept(f"review-rounds-student-{policy}-{len(reviewed)}-seed{seed}", depends_on, compute)
        accepted = calibration.get("accepted_unreviewed", {}).get("train", 0)
        log.info(
            "review rounds: %s seed %d, %d reviews (+%d accepted) -> test F1 %.3f",
            policy,
            seed,
            len(reviewed),
            accepted,
            result["f1"],
        )
        return (
            {
                "policy": policy,
                "seed": seed,
                "reviews": len(reviewed),
                "accepted": accepted,
                "train_records": len(records),
                "accepted_span_precision": (calibration.get("test_held_out") or {}).get("accepted_span_precision"),
            }
            | calibration_figures(calibration)
            | result
        )

    def next_batch(self, reviewed: set[str], scores: dict[str, dict]) -> set[str]:
        """The train headlines argilla_review's queue sends next."""
        state = review_state(self.splits, reviewed)
        judged = {name: judged_labels(frame, scores) for name, frame in state.items()}
        marked, _, _ = auto_accept(state, judged, self.review)
        queue = review_queue(judged, marked, {i: row["priority"] for i, row in scores.items()}, self.review)
        return set(queue.filter(pl.col("batch").is_not_null())["id"].to_list())

    def policy_rows(self, seed: int, counts: list[int], policies: list[str]) -> list[dict]:
        train_ids = sorted(self.splits["train"]["id"].to_list())
        rows = []
        if "random" in policies:  # the learning curve's human-label points (kept: computed once for both)
            rows += [self.curve_point("random", k, seed) for k in counts]
        if "one_shot" in policies or "rounds" in policies:
            before = self.scores(set(), seed)
            by_priority = sorted(train_ids, key=lambda i: (-before[i]["priority"], seeded_rank(seed, i)))
            if "one_shot" in policies:
                rows += [self.student("one_shot", set(by_priority[:k]), seed) for k in counts]
        if "rounds" in policies:
            reviewed: set[str] = set()
            scores = before
            for _ in counts:
                reviewed |= self.next_batch(reviewed, scores)
                scores = self.scores(reviewed, seed)  # the scout learns from this round's reviews
                rows.append(self.student("rounds", reviewed, seed, scores))
        if "everything" in policies:
            rows.append(self.curve_point("everything", None, seed))
        return rows

    def curve_point(self, policy: str, reviews: int | None, seed: int) -> dict:
        """Random review order is the learning curve's: its human labels of a seeded subset of the train headlines
        with a valid teacher answer (all of them: everything), trained and kept by the same function."""
        records = seeded_subset(self.pool, reviews, seed)
        result = curve_point(self.run, STUDENT, "human", records, seed, self.valid, self.test)
        log.info("review rounds: %s seed %d, %d reviews -> test F1 %.3f", policy, seed, len(records), result["f1"])
        return {
            "policy": policy,
            "seed": seed,
            "reviews": len(records),
            "accepted": 0,
            "train_records": len(records),
        } | result


def calibration_figures(calibration: dict) -> dict:
    """EVIDENCE from argilla_review's calibration metrics (empty without them)."""
    if not calibration:
        return {}
    span = calibration["sources"].get("scout_span", {})
    return {
        "supported_span_precision": calibration["supported_precision"]["span"],
        "supported_no_other_precision": calibration["supported_precision"]["no_other_company"],
        "span_ece_raw": span.get("ece_raw"),
        "span_ece_calibrated": span.get("ece_calibrated"),
    }


def in_count_order(cells: dict[str, dict]) -> list[tuple[str, dict]]:
    """A policy's cells by review count (the JSON keeps its keys as sorted strings)."""
    return sorted(cells.items(), key=lambda item: int(item[0]))


def summary(rows: list[dict]) -> dict:
    """Per policy and review count: F1 over seeds (over_seeds), mean accepted labels, and the gain over random at
    the same count, seed by seed."""
    f1 = {(r["policy"], r["reviews"], r["seed"]): r["f1"] for r in rows}
    result: dict[str, dict] = {}
    for policy in POLICIES:
        for reviews in sorted({r["reviews"] for r in rows if r["policy"] == policy}):
            runs = [r for r in rows if r["policy"] == policy and r["reviews"] == reviews]
            cell = over_seeds(runs) | {"accepted_mean": round(mean(r["accepted"] for r in runs), 1)}
            for name in EVIDENCE:
                if all(r.get(name) is not None for r in runs):
                    cell[f"{name}_mean"] = round(mean(r[name] for r in runs), 4)
            gains = [
                round(r["f1"] - f1[("random", reviews, r["seed"])], 4)
                for r in runs
                if ("random", reviews, r["seed"]) in f1
            ]
            if gains and policy != "random":
                cell["gain_over_random"] = {"mean": round(mean(gains), 4), "min": min(gains), "max": max(gains)}
            result.setdefault(policy, {})[str(reviews)] = cell
    return result


def markdown_table(result: dict) -> str:
    everything = next(iter(result["policies"]["everything"].values()))
    lines = [
        f"GLiNER test F1 against train reviews spent, {result['train_headlines']:,} real train titles (rounds of "
        f"{result['batch']}, auto-accept at precision {result['accept_precision']}). "
        f"Test: {result['test_human_labelled']} human-labelled titles. Mean over seeds "
        f"{', '.join(map(str, result['seeds']))} ± sd [lowest, highest]; the gain is over random order at the same "
        "count, seed by seed.",
        "",
        "| reviews | policy | test F1 | accepted unseen | gain over random |",
        "|---|---|---|---|---|",
    ]
    for policy in [p for p in POLICIES if p in result["policies"]]:  # the JSON keeps its keys sorted
        for reviews, cell in in_count_order(result["policies"][policy]):
            gain = cell.get("gain_over_random")
            gain_cell = "" if gain is None else f"{gain['mean']:+.3f} [{gain['min']:+.3f}, {gain['max']:+.3f}]"
            lines.append(
                f"| {int(reviews):,} | {policy} | {seed_cell(cell)} | {cell['accepted_mean']:g} | {gain_cell} |"
            )
    supported = [
        f"{int(k):,} reviews: {c['supported_span_precision_mean']:.3f} for a span, "
        f"{c['supported_no_other_precision_mean']:.3f} for no other company (span score ECE "
        f"{c['span_ece_raw_mean']:.3f} raw, {c['span_ece_calibrated_mean']:.3f} calibrated)"
        for k, c in in_count_order(result["policies"].get("rounds", {}))
        if "supported_span_precision_mean" in c and "span_ece_calibrated_mean" in c
    ]
    if supported:
        lines += [
            "",
            f"The highest precision the human labels so far let auto-accept promise (the target is "
            f"{result['accept_precision']}), mean over seeds: {'; '.join(supported)}.",
        ]
    lines += [
        "",
        f"Goal: the rounds reach review-everything's F1 ({everything['f1_mean']:.3f}, seeds' 95% range "
        f"[{result['everything_range'][0]:.3f}, {result['everything_range'][1]:.3f}]) with at most half the reviews: "
        f"{result['goal']}.",
    ]
    return "\n".join(lines) + "\n"


def seeds_range(values: list[float]) -> tuple[float, float]:
    """The 95% t-interval of the mean over seeds (2 to 5 seeds)."""
    t = {2: 12.706, 3: 4.303, 4: 3.182, 5: 2.776}[len(values)]
    half = t * stdev(values) / len(values) ** 0.5
    return round(mean(values) - half, 4), round(mean(values) + half, 4)


def goal(result: dict) -> str:
    """Whether rounds reach the everything range's low end with at most half the train reviews, or by how much not."""
    low = result["everything_range"][0]
    half = [
        (int(k), cell)
        for k, cell in result["policies"].get("rounds", {}).items()
        if int(k) * 2 <= result["train_headlines"]
    ]
    if not half:
        return "not measured (no rounds count at half the train split or less)"
    k, cell = max(half)
    verdict = "met" if cell["f1_mean"] >= low else f"missed by {low - cell['f1_mean']:.3f}"
    return f"{verdict} (rounds at {k:,} reviews: {cell['f1_mean']:.3f})"


def plot(result: dict, path: Path) -> None:
    series = []
    for (policy, by_count), style in zip(result["policies"].items(), ["o:", "s--", "^-", "D"]):
        counts = sorted(by_count, key=int)
        series.append(
            {
                "label": policy.replace("_", "-"),
                "x": [int(k) for k in counts],
                "f1": [by_count[k]["f1_mean"] for k in counts],
                "style": style,
            }
        )
    title = f"Review order on {result['train_headlines']:,} real train titles ({len(result['seeds'])} seeds)"
    plot_f1(path, title, "train headlines reviewed", series, result["teacher"]["f1"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=ROOT, help="the pipeline run's directory (default: this tree)")
    parser.add_argument("--batch", type=int, default=300, help="train headlines a round of review sends")
    parser.add_argument("--rounds", type=int, default=2, help="rounds (review counts batch, 2 x batch, ...)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--policies", nargs="+", default=list(POLICIES), choices=POLICIES)
    parser.add_argument("--name", default="review_rounds", help="metrics/<name>.json, .csv and .png")
    parser.add_argument("--table", action="store_true", help="print the table of metrics/<name>.json, run nothing")
    args = parser.parse_args()
    out = ROOT / "metrics" / f"{args.name}.json"
    if args.table:
        if not out.exists():
            raise SystemExit(f"{out.relative_to(ROOT)}: no results yet (make review-rounds writes them)")
        print(markdown_table(json.loads(out.read_text())), end="")
        return
    setup_logging()
    run = Run(args.run)
    simulation = Simulation(run, args.batch)
    counts = [args.batch * (i + 1) for i in range(args.rounds)]
    rows = [row for seed in args.seeds for row in simulation.policy_rows(seed, counts, args.policies)]
    result = {
        "batch": args.batch,
        "seeds": args.seeds,
        "accept_precision": simulation.review.accept_precision,
        "train_headlines": simulation.splits["train"].height,
        "test_human_labelled": len(simulation.test),
        "teacher": run.teacher_score(simulation.splits["test"], simulation.test),
        "policies": summary(rows),
    }
    everything = [r["f1"] for r in rows if r["policy"] == "everything"]
    if len(everything) > 1:
        result["everything_range"] = seeds_range(everything)
        result["goal"] = goal(result)
    write_json(out, result)
    write_csv(ROOT / "metrics" / f"{args.name}.csv", rows, FIELDS)
    plot(result, ROOT / "metrics" / f"{args.name}.png")
    print(json.dumps({p: {k: c["f1_mean"] for k, c in by.items()} for p, by in result["policies"].items()}))


if __name__ == "__main__":
    main()
