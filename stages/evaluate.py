"""evaluate: score every model on the test split like a paper would, and price it.

For each fine-tuned student, each zero-shot base that is a real NER checkpoint (a bare encoder is
skipped, with a note) and the teacher: entity-level exact-span P/R/F1 with a seeded bootstrap 95% CI,
partial-overlap F1 and F1 per year. The reference is the reviewed label (human where reviewed, else the
teacher's): `reference` says how much of it is human; with no review the teacher scores itself.
Outputs: metrics/metrics.json (deterministic), metrics/speed.json (measured headlines/s and USD per
million headlines), metrics/errors.csv (top false positives / negatives per model) and plot data.
"""
from __future__ import annotations

import csv
import json
import time
from collections import Counter
from pathlib import Path

import numpy as np
import polars as pl

from stages import finetune_gliner, finetune_spanmarker
from stages.common.encoder import local_encoder_dir
from stages.common.io import log, read_table, setup_logging, write_json
from stages.common.metrics import entity_scores
from stages.common.params import load_params
from stages.common.schema import span_tuples
from stages.common.training import labelled_records, with_recipe

TEST = Path("data/reviewed/test.parquet")
TEACHER_METRICS = Path("metrics/llm_label.json")
STUDENTS = {"gliner": (finetune_gliner, Path("models/gliner")),
            "spanmarker": (finetune_spanmarker, Path("models/spanmarker"))}
METRICS = Path("metrics/metrics.json")
SPEED = Path("metrics/speed.json")
ERRORS = Path("metrics/errors.csv")
F1_PLOT = Path("metrics/f1_by_model.csv")
COST_PLOT = Path("metrics/cost_vs_f1.csv")


def counts_per_headline(gold: list[list[dict]], predicted: list[list[dict]]) -> np.ndarray:
    """(tp, fp, fn) per headline, the unit the bootstrap resamples."""
    rows = []
    for g, p in zip(gold, predicted, strict=True):
        g, p = span_tuples(g), span_tuples(p)
        rows.append((len(g & p), len(p - g), len(g - p)))
    return np.array(rows, dtype=np.int64).reshape(-1, 3)


def f1_of(tp, fp, fn):
    denominator = 2 * tp + fp + fn
    return np.where(denominator > 0, 2 * tp / np.maximum(denominator, 1), 0.0)


def bootstrap_f1_ci(counts: np.ndarray, resamples: int, seed: int) -> tuple[float, float]:
    """95% percentile interval of F1 over headlines resampled with replacement."""
    if len(counts) == 0:
        return 0.0, 0.0
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(counts), size=(resamples, len(counts)))
    totals = counts[picks].sum(axis=1)
    scores = f1_of(totals[:, 0], totals[:, 1], totals[:, 2])
    return round(float(np.percentile(scores, 2.5)), 4), round(float(np.percentile(scores, 97.5)), 4)


def partial_f1(gold: list[list[dict]], predicted: list[list[dict]]) -> float:
    """F1 where a span counts as found when it overlaps any span on the other side."""
    def overlaps(a, spans):
        return any(a[0] < b[1] and b[0] < a[1] for b in spans)
    hit_pred = total_pred = hit_gold = total_gold = 0
    for g, p in zip(gold, predicted, strict=True):
        g, p = sorted(span_tuples(g)), sorted(span_tuples(p))
        hit_pred += sum(overlaps(s, g) for s in p)
        hit_gold += sum(overlaps(s, p) for s in g)
        total_pred, total_gold = total_pred + len(p), total_gold + len(g)
    precision = hit_pred / total_pred if total_pred else 0.0
    recall = hit_gold / total_gold if total_gold else 0.0
    return round(2 * precision * recall / (precision + recall), 4) if precision + recall else 0.0


def score(records: list[dict], predicted: list[list[dict]], bootstrap: dict) -> dict:
    gold = [r["spans"] for r in records]
    result = entity_scores(gold, predicted)
    low, high = bootstrap_f1_ci(counts_per_headline(gold, predicted), bootstrap["resamples"], bootstrap["seed"])
    years = sorted({r["date"].year for r in records})
    by_year = {str(y): entity_scores([r["spans"] for r in records if r["date"].year == y],
                                     [p for r, p in zip(records, predicted) if r["date"].year == y])["f1"]
               for y in years}
    return result | {"f1_ci_low": low, "f1_ci_high": high, "partial_f1": partial_f1(gold, predicted),
                     "f1_by_year": by_year}


def top_errors(records: list[dict], predicted: list[list[dict]], limit: int) -> list[dict]:
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
    return [{"kind": kind, "span": text, "count": n, "example": example[(kind, text)]}
            for kind, counter in found.items()
            for text, n in sorted(counter.items(), key=lambda item: (-item[1], item[0]))[:limit]]


def zero_shot_predictors() -> tuple[dict, dict]:
    """Predict functions for the students' bases that are real NER checkpoints; notes for those skipped."""
    predictors, notes = {}, {}
    for name, (module, _) in STUDENTS.items():
        section = f"finetune_{name}"
        params = with_recipe(load_params(section), section)
        if local_encoder_dir(params["base_model"]) is not None:
            notes[f"{name}_zero_shot"] = f"skipped: base {params['base_model']} is a bare encoder, not an NER model"
            continue
        try:
            predictors[f"{name}_zero_shot"] = module.zero_shot(params)
        except (OSError, SystemExit) as error:
            notes[f"{name}_zero_shot"] = f"skipped: cannot load {params['base_model']}: {str(error)[:200]}"
    return predictors, notes


def timed_predictions(predict, texts: list[str], batch_size: int, min_texts: int = 256) -> tuple[list, float]:
    """Predictions for texts, and headlines/s measured on at least min_texts headlines (after a warm-up)."""
    predicted = predict(texts, batch_size)
    sample = (texts * (min_texts // max(1, len(texts)) + 1))[:max(min_texts, len(texts))]
    started = time.perf_counter()
    predict(sample, batch_size)
    return predicted, len(sample) / (time.perf_counter() - started)


def usd_per_million(headlines_per_s: float, usd_per_hour: float) -> float:
    return round(1e6 / (headlines_per_s * 3600) * usd_per_hour, 4)


def write_csv(path: Path, rows: list[dict]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else ["model"], lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def main() -> None:
    setup_logging()
    params = load_params("evaluate")
    bootstrap, cpu_usd_per_hour = params["bootstrap"], params["cpu_usd_per_hour"]
    test = read_table(TEST, ["id", "text", "date", "spans", "llm_spans", "label_source"])
    records = labelled_records(test)
    dates = dict(zip(test["id"].to_list(), test["date"].to_list()))
    teacher_spans = dict(zip(test["id"].to_list(), test["llm_spans"].to_list()))
    records = [r | {"date": dates[r["id"]]} for r in records]
    texts = [r["text"] for r in records]

    predictions = {"teacher": [teacher_spans[r["id"]] or [] for r in records]}
    speed = {}
    zero_shot, notes = zero_shot_predictors()
    students = {name: module.load(model_dir)[1] for name, (module, model_dir) in STUDENTS.items()}
    for name, predict in {**students, **zero_shot}.items():
        predictions[name], headlines_per_s = timed_predictions(predict, texts, params.get("batch_size", 32))
        speed[name] = {"headlines_per_s": round(headlines_per_s, 1),
                       "usd_per_million_headlines_cpu": usd_per_million(headlines_per_s, cpu_usd_per_hour)}
    teacher = json.loads(TEACHER_METRICS.read_text())
    if teacher.get("answers") and teacher.get("endpoint_hours"):  # older caches carry no latencies
        speed["teacher"] = {"usd_per_million_headlines": round(teacher["estimated_cost_usd"] / teacher["answers"] * 1e6, 4),
                            "headlines_per_s": round(teacher["answers"] / max(teacher["endpoint_hours"] * 3600, 1e-9), 2)}

    metrics = {"test_records": len(records),
               "reference": dict(sorted(Counter(r["label_source"] for r in records).items())),
               **{name: score(records, predicted, bootstrap) for name, predicted in predictions.items()}, **notes}
    write_json(METRICS, metrics)
    write_json(SPEED, speed)
    write_csv(ERRORS, [{"model": name, **row} for name, predicted in predictions.items()
                       for row in top_errors(records, predicted, params.get("top_errors", 20))])
    write_csv(F1_PLOT, [{"model": name, "f1": metrics[name]["f1"], "f1_ci_low": metrics[name]["f1_ci_low"],
                         "f1_ci_high": metrics[name]["f1_ci_high"]} for name in predictions])
    write_csv(COST_PLOT, [{"model": name, "f1": metrics[name]["f1"],
                           "usd_per_million_headlines": speed[name].get("usd_per_million_headlines_cpu",
                                                                        speed[name].get("usd_per_million_headlines"))}
                          for name in predictions if name in speed])
    for name in predictions:
        m = metrics[name]
        log.info("evaluate: %-22s P %.3f R %.3f F1 %.3f [%.3f, %.3f] %s", name, m["precision"], m["recall"], m["f1"],
                 m["f1_ci_low"], m["f1_ci_high"], speed.get(name, ""))
    human = metrics["reference"].get("human", 0)
    if human < len(records):
        log.warning("evaluate: %d of %d test references are the teacher's own labels (not human-reviewed)",
                    len(records) - human, len(records))


if __name__ == "__main__":
    main()
