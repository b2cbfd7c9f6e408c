"""Student speed on 2 CPU cores: inference headlines/s at batch 32 of each saved student as saved (fp32), with torch
dynamic int8 quantization, and in its exported CPU-serving form (int8 ONNX Runtime, `<name>_export`), the F1 cost
of the export, and training steps/s.

Inference uses the students the finetune stages wrote (their paths in dvc.yaml; run `make demo` first), or those in
--models DIR (DIR/gliner, DIR/gliner_export, ...: any directory holding trained students). An export missing there
is made into a temporary directory. Speeds are taken on
--headlines headlines of the embedded sample, all variants of a student back to back in one process, so
their ratios hold on a busy machine even when absolute numbers do not. `<name>_export_f1_delta` is exported
minus fp32 entity F1 (exact spans) on the sample's gold headlines dated like the test split (2019 on): held out
from training both in the pipeline and for students trained on earlier headlines. Training steps/s comes from a
short real run of each student's train() on sample headlines with their gold spans (benchmarks may read the
gold file; the pipeline never does); --skip-train leaves it out. --tiny runs every part at its smallest size, in
seconds (the test suite runs it so the benchmark cannot rot). Prints one JSON line.
"""

from __future__ import annotations

import argparse
import csv
import json
import tempfile
import time
from pathlib import Path

from stages.core.metrics import entity_scores
from stages.core.paths import dvc_paths
from stages.serving.package import servable_folder
from stages.students.registry import STUDENTS, training_params
from stages.students.runtime import is_exported

ROOT = Path(__file__).resolve().parents[1]

TINY = {"headlines": 16, "f1_headlines": 16, "train_records": 24}
GOLD = ROOT / "data/sample/reviewer_labels.jsonl"
TEST_FROM = "2019-01-01"  # the split stage's test years


def headlines(n: int) -> list[str]:
    with open(ROOT / "data/sample/headlines.csv", encoding="utf-8") as f:
        return [row["text"] for row in csv.DictReader(f)][:n]


def gold_records(n: int | None = None, since: str = "") -> list[dict]:
    with open(GOLD, encoding="utf-8") as f:
        rows = [json.loads(line) for line in f]
    records = [
        {"id": f"{i:05d}", "text": r["text"], "spans": r["spans"]}
        for i, r in enumerate(rows)
        if r.get("date", "") >= since
    ]
    return records[:n]


def headlines_per_s(predict, texts: list[str], batch_size: int) -> float:
    predict(texts[:batch_size], batch_size)  # warm-up
    started = time.perf_counter()
    predict(texts, batch_size)
    return round(len(texts) / (time.perf_counter() - started), 1)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", type=Path, help="a directory holding <student> and <student>_export")
    parser.add_argument("--students", nargs="+", default=sorted(STUDENTS), choices=sorted(STUDENTS))
    parser.add_argument("--headlines", type=int, default=1000)
    parser.add_argument("--f1-headlines", type=int, help="at most this many gold test headlines (default: all)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--train-records", type=int, default=160)
    parser.add_argument("--skip-train", action="store_true")
    parser.add_argument("--tiny", action="store_true", help=f"the smallest run, for tests: {TINY}")
    args = parser.parse_args()
    if args.tiny:
        vars(args).update(TINY)
    paths = dvc_paths(ROOT)
    texts, result = headlines(args.headlines), {}
    test = gold_records(args.f1_headlines, since=TEST_FROM)
    with tempfile.TemporaryDirectory() as scratch:
        for name in args.students:
            student = STUDENTS[name]
            model_dir, export_dir = (
                (args.models / name, args.models / f"{name}_export")
                if args.models
                else (paths[name], paths[f"{name}_export"])
            )
            if not is_exported(export_dir):
                export_dir = Path(scratch) / f"{name}_export"
                started = time.perf_counter()
                servable_folder(student, model_dir, export_dir)
                result[f"{name}_export_s"] = round(time.perf_counter() - started, 1)
            f1 = {}
            for variant, (directory, int8) in {
                "": (model_dir, False),
                "_int8": (model_dir, True),
                "_export": (export_dir, False),
            }.items():
                predict = student.load(directory, int8=int8)
                result[f"{name}{variant}_headlines_per_s"] = headlines_per_s(predict, texts, args.batch_size)
                if variant != "_int8":
                    f1[variant] = entity_scores([r["spans"] for r in test], predict([r["text"] for r in test]))["f1"]
            result[f"{name}_f1"] = round(f1[""], 4)
            result[f"{name}_export_f1_delta"] = round(f1["_export"] - f1[""], 4)
            if not args.skip_train:
                training = training_params(name, ROOT / "params.yaml").model_copy(update={"epochs": 1})
                records = gold_records(args.train_records)
                trained = student.train(training, records[:-16], records[-16:], Path(scratch) / f"{name}_trained")
                result[f"{name}_train_steps_per_s"] = round(trained.train_steps_per_s, 2)
    print(json.dumps(result | {"headlines": len(texts), "batch_size": args.batch_size, "f1_headlines": len(test)}))


if __name__ == "__main__":
    main()
