"""evaluate: score every model on the test split against human labels, like a paper would, and price it.

The reference is the human label (Argilla submission or label file) of each test headline; headlines
without one are left out, and their count is in the metrics. For each fine-tuned student, each zero-shot
base that is a real NER checkpoint (a bare encoder is skipped, with a note) and the teacher: entity-level
exact-span P/R/F1 with a seeded bootstrap 95% CI, partial-overlap F1 and F1 per year. With no human label
at all the reference falls back to the teacher's labels (`reference: teacher`) and the teacher is not
scored against itself; with no usable test headline at all (every one discarded or without a label) nothing
is scored on the test split (`reference: none`, said in the metrics and the log). `evaluate.extra_test_sets`
(labelled files inside `evaluate.test_set_dir`) are scored for every student with the same bootstrap CI.
Each student is scored twice: as saved (fp32, torch) and in its exported CPU-serving form (`<name>_export`: int8
ONNX Runtime, written by its export stage), so metrics and speed show what serving the export costs in F1.
Outputs: quality (one small file per scored model: P/R/F1 with its CI, the reference and the test size: what
`dvc metrics show` and `dvc metrics diff` show), metrics (deterministic: everything scored, git-tracked), the top
false positives / negatives per model, the F1 plot data, and the rounds table (F1 per round of review: one row per
count of human-labelled train headlines, kept from run to run); every path comes from dvc.yaml. Besides them, a report
of this machine (metrics/speed/, ignored by git and no DVC output, so that a run changes neither git nor dvc.lock):
headlines/s and USD per million headlines, the teacher's from llm_label's report when it ran here, and the
cost-vs-F1 plot data. The log names each model as it is loaded, predicted and timed.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

import polars as pl

from stages.core.cli import run_stage, stage_args
from stages.core.errors import PipelineError
from stages.core.io import log, read_table, replacing_dir, write_csv, write_json
from stages.core.legacy import old_teacher_speed
from stages.core.metrics import score, usd_per_million
from stages.core.params import load_params
from stages.core.schema import Record, span_tuples
from stages.core.stage_params import EvaluateParams
from stages.labels.files import accepted, read_label_file, require_inside
from stages.labels.records import ACCEPTED, HUMAN, LABEL_COLUMNS, human_records, labelled_records
from stages.labels.resolve import standalone
from stages.students.config import PredictParams
from stages.students.encoder import local_encoder_dir
from stages.students.registry import STUDENTS, training_params


def top_errors(records: list[Record], predicted: list[list[dict]], limit: int) -> list[dict]:
    """Most frequent false-positive and false-negative span texts, with one headline each."""
    found: dict[str, Counter] = {"false_positive": Counter(), "false_negative": Counter()}
    example: dict[tuple[str, str], str] = {}
    for record, spans in zip(records, predicted):
        gold, pred = span_tuples(record["spans"]), span_tuples(spans)
        for kind, wrong in (("false_positive", pred - gold), ("false_negative", gold - pred)):
            for start, end in wrong:
                text = record["text"][start:end]
                found[kind][text] += 1
                example.setdefault((kind, text), record["text"])
    return [
        {"kind": kind, "span": text, "count": n, "example": example[(kind, text)]}
        for kind, counter in found.items()
        for text, n in sorted(counter.items(), key=lambda item: (-item[1], item[0]))[:limit]
    ]


def zero_shot_predictors(decoding: PredictParams) -> tuple[dict, dict]:
    """Predict functions for the students' bases that are real NER checkpoints, decoding as params `predict` says;
    notes for those skipped."""
    predictors, notes = {}, {}
    for name, student in STUDENTS.items():
        training = training_params(name)
        if local_encoder_dir(training.base_model) is not None:
            notes[f"{name}_zero_shot"] = f"skipped: base {training.base_model} is a bare encoder, not an NER model"
            continue
        try:
            predictors[f"{name}_zero_shot"] = student.zero_shot(training, decoding.decode(name))
        except (OSError, PipelineError) as error:
            notes[f"{name}_zero_shot"] = f"skipped: cannot load {training.base_model}: {str(error)[:200]}"
    return predictors, notes


def reference_records(test) -> tuple[list[Record], str]:
    """The test records to score on and what their reference is: human labels, or (with none at all) the
    teacher's labels, said as such; "none" when no test headline has a usable label."""
    records = labelled_records(test)
    human = human_records(records)
    return (human, "human") if human else (records, "teacher" if records else "none")


def teacher_speed(teacher: dict) -> dict:
    """Headlines/s and USD per million headlines from llm_label's metrics (per headline, not per answer)."""
    if "headlines_per_s" in teacher:
        return {k: teacher[k] for k in ("headlines_per_s", "usd_per_million_headlines")}
    return old_teacher_speed(teacher)


def extra_test_set_scores(params: EvaluateParams, test_set_dir: Path, predictors: dict) -> dict:
    """Every student on each extra labelled test set (files inside the directory DVC tracks)."""
    results = {}
    for path in params.extra_test_sets:
        require_inside(path, test_set_dir, "evaluate.extra_test_sets")
        labels = read_label_file(path, params)
        test_set = standalone(labels)
        records, texts = test_set.records, [r["text"] for r in test_set.records]
        if test_set.repeats:
            log.info(
                "evaluate: %s: %d line(s) repeat a headline with the same spans, scored once (first: %s)",
                path,
                len(test_set.repeats),
                test_set.repeats[0],
            )
        results[Path(path).name] = {
            "records": len(records),
            "repeated": len(test_set.repeats),
            "rejected": len(labels) - len(accepted(labels)),
            "teacher": "not scored: the teacher was not asked about this set",
            **{
                name: score(records, predict(texts, params.batch_size), params.bootstrap)
                for name, predict in predictors.items()
            },
        }
    return results


QUALITY_KEYS = {
    "f1": "f1",
    "f1_low": "f1_ci_low",
    "f1_high": "f1_ci_high",
    "precision": "precision",
    "recall": "recall",
}


ROUND_FIELDS = ["train_reviewed", "train_accepted", "teacher", "gliner", "spanmarker", "gliner_export"]
ROUND_FIELDS += ["spanmarker_export"]


def with_round(previous: list[dict], train_sources: Counter, metrics: dict) -> list[dict]:
    """The rounds table (F1 against human labels per train review count) with this run's row: a rerun at a count
    already there replaces its row, so each round of review keeps one row and the table never depends on how often
    the pipeline ran."""
    row = {
        "train_reviewed": train_sources.get(HUMAN, 0),
        "train_accepted": train_sources.get(ACCEPTED, 0),
        **{name: metrics[name]["f1"] for name in ROUND_FIELDS[2:] if name in metrics},
    }
    kept = [r for r in previous if int(r["train_reviewed"]) != row["train_reviewed"]]
    return sorted([*kept, row], key=lambda r: int(r["train_reviewed"]))


def quality_files(metrics: dict, models: list[str]) -> dict[str, dict]:
    """What `dvc metrics show` shows, one small file per scored model (one row each, under 120 columns): exact-span
    P/R/F1 with its 95% CI on the test split, the reference and how many test headlines were scored. The rest
    (partial F1, F1 per year, counts, extra test sets, notes) stays in the full metrics file."""
    shared = {"reference": metrics["reference"], "headlines": metrics["test_records"]}
    if not models:  # nothing scored: one row that says so
        return {"nothing_scored": shared}
    return {name: {key: metrics[name][source] for key, source in QUALITY_KEYS.items()} | shared for name in models}


def write_quality(directory: Path, files: dict[str, dict]) -> None:
    """The quality directory, replaced whole (a model no longer scored leaves no stale file behind)."""
    with replacing_dir(directory) as staging:
        for name, payload in files.items():
            write_json(staging / f"{name}.json", payload)


def timed_predictions(predict, texts: list[str], batch_size: int, min_texts: int = 256) -> tuple[list, float]:
    """Predictions for texts, and headlines/s measured on at least min_texts headlines (after a warm-up)."""
    predicted = predict(texts, batch_size)
    sample = (texts * (min_texts // max(1, len(texts)) + 1))[: max(min_texts, len(texts))]
    started = time.perf_counter()
    predict(sample, batch_size)
    return predicted, len(sample) / (time.perf_counter() - started)


def main(argv: list[str] | None = None) -> None:
    args = stage_args(
        __doc__.splitlines()[0],
        (
            "test",
            "teacher-speed",
            "gliner",
            "spanmarker",
            "gliner-export",
            "spanmarker-export",
            "test-set-dir",
            "quality",
            "metrics",
            "speed",
            "errors",
            "f1-plot",
            "cost-plot",
            "train",
            "rounds",
        ),
        argv,
    )
    params = load_params(EvaluateParams)
    decoding = load_params(PredictParams)  # how the students decode, as served (dvc.yaml: predict.<student>)
    bootstrap, cpu_usd_per_hour, batch_size = params.bootstrap, params.cpu_usd_per_hour, params.batch_size
    test = read_table(args.test, ["id", "text", "date", *LABEL_COLUMNS])
    records, reference = reference_records(test)
    dates = dict(zip(test["id"].to_list(), test["date"].to_list()))
    teacher_spans = dict(zip(test["id"].to_list(), test["teacher_spans"].to_list()))
    for record in records:
        record["date"] = dates[record["id"]]  # F1 per year
    texts = [r["text"] for r in records]
    sources = dict(sorted(Counter(test["label_source"].to_list()).items()))

    predictions, speed, notes = {}, {}, {}
    if reference == "human":
        predictions["teacher"] = [teacher_spans[r["id"]] or [] for r in records]
    elif reference == "teacher":
        notes["teacher"] = "not scored: no human-labelled test headline, so the reference is the teacher's own labels"
        log.warning(
            "evaluate: no human-labelled test headline: the reference is the teacher's labels, so this "
            "measures how well the students imitate the teacher, not how good any model is"
        )
    else:
        notes["note"] = (
            "nothing scored on the test split: no test headline has a usable label (each is discarded "
            "in review, or has no human label and no valid teacher answer)"
        )
        log.warning("evaluate: %s; label sources in the split: %s", notes["note"], sources)
    log.info("evaluate: loading the students (fp32 and export) and any zero-shot base")
    zero_shot, skipped = zero_shot_predictors(decoding)
    notes |= skipped
    students = {  # fp32 and export forms, both decoding as params say (rows in this order in every output)
        f"{name}{form}": student.load(getattr(args, f"{name}{form}"), decode=decoding.decode(name))
        for form in ("", "_export")
        for name, student in STUDENTS.items()
    }
    scored = {**students, **zero_shot} if records else {}  # nothing to time or score on no headline
    for number, (name, predict) in enumerate(scored.items(), 1):
        log.info(
            "evaluate: %s (%d of %d): predicting %d test headlines, then timing it",
            name,
            number,
            len(scored),
            len(texts),
        )
        predictions[name], headlines_per_s = timed_predictions(predict, texts, batch_size)
        speed[name] = {
            "headlines_per_s": round(headlines_per_s, 1),
            "usd_per_million_headlines_cpu": usd_per_million(headlines_per_s, cpu_usd_per_hour),
        }
    if args.teacher_speed.exists():  # llm_label's report, when it ran on this machine (no dependency: a timing)
        speed["teacher"] = teacher_speed(json.loads(args.teacher_speed.read_text()))

    metrics: dict[str, Any] = {
        "reference": reference,
        "test_records": len(records),
        "test_headlines_in_split": test.height,
        "label_sources_in_split": sources,
        **{name: score(records, predicted, bootstrap) for name, predicted in predictions.items()},
        **notes,
    }
    if params.extra_test_sets:
        log.info("evaluate: %d extra test set(s), every student", len(params.extra_test_sets))
        metrics["extra_test_sets"] = extra_test_set_scores(params, args.test_set_dir, {**students, **zero_shot})
    write_quality(args.quality, quality_files(metrics, list(predictions)))
    rounds = pl.read_csv(args.rounds).to_dicts() if args.rounds.exists() else []
    if reference == "human":  # a round is measured against human labels only; the table is written either way
        train_sources = Counter(read_table(args.train, ["label_source"])["label_source"].to_list())
        rounds = with_round(rounds, train_sources, metrics)
    write_csv(args.rounds, rounds, ROUND_FIELDS)
    write_json(args.metrics, metrics)
    write_json(args.speed, speed)
    write_csv(
        args.errors,
        [
            {"model": name, **row}
            for name, predicted in predictions.items()
            for row in top_errors(records, predicted, params.top_errors)
        ],
        ["model", "kind", "span", "count", "example"],
    )
    write_csv(
        args.f1_plot,
        [
            {
                "model": name,
                "f1": metrics[name]["f1"],
                "f1_ci_low": metrics[name]["f1_ci_low"],
                "f1_ci_high": metrics[name]["f1_ci_high"],
            }
            for name in predictions
        ],
        ["model", "f1", "f1_ci_low", "f1_ci_high"],
    )
    write_csv(
        args.cost_plot,
        [
            {
                "model": name,
                "f1": metrics[name]["f1"],
                "usd_per_million_headlines": speed[name].get(
                    "usd_per_million_headlines_cpu", speed[name].get("usd_per_million_headlines")
                ),
            }
            for name in predictions
            if speed.get(name)
        ],
        ["model", "f1", "usd_per_million_headlines"],
    )
    log.info("evaluate: reference %s labels on %d of %d test headlines", reference, len(records), test.height)
    for name in predictions:
        m = metrics[name]
        log.info(
            "evaluate: %-22s P %.3f R %.3f F1 %.3f [%.3f, %.3f] %s",
            name,
            m["precision"],
            m["recall"],
            m["f1"],
            m["f1_ci_low"],
            m["f1_ci_high"],
            speed.get(name, ""),
        )


if __name__ == "__main__":
    run_stage(main)
