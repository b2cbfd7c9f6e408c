"""Student speed on 2 CPU cores: inference headlines/s at batch 32 of each saved student (as saved, and with
dynamic int8 quantization for CPU serving), and training steps/s.

Inference uses the models the pipeline saved (models/gliner, models/spanmarker: run `make demo` first) on
--headlines headlines of the embedded sample. Training steps/s comes from a short real run of each
student's train() on sample headlines with their gold spans (benchmarks may read the gold file; the
pipeline never does). Prints one JSON line.
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from stages.common import gliner_student, spanmarker_student  # noqa: E402
from stages.common.params import load_params  # noqa: E402
from stages.common.training import with_recipe  # noqa: E402

STUDENTS = {"gliner": (gliner_student, "finetune_gliner"), "spanmarker": (spanmarker_student, "finetune_spanmarker")}


def headlines(n: int) -> list[str]:
    with open(ROOT / "data/sample/headlines.csv", encoding="utf-8") as f:
        return [row["text"] for row in csv.DictReader(f)][:n]


def gold_records(n: int) -> list[dict]:
    with open(ROOT / "tests/fixtures/sample_gold.jsonl", encoding="utf-8") as f:
        rows = [json.loads(line) for line in f][:n]
    return [{"id": f"{i:05d}", "text": r["text"], "spans": r["spans"]} for i, r in enumerate(rows)]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--headlines", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--train-records", type=int, default=160)
    args = parser.parse_args()
    texts, result = headlines(args.headlines), {}
    for name, (module, section) in STUDENTS.items():
        for int8, suffix in ((False, ""), (True, "_int8")):
            _, predict = module.load(ROOT / "models" / name, int8=int8)
            predict(texts[:32], args.batch_size)  # warm-up
            started = time.perf_counter()
            predict(texts, args.batch_size)
            result[f"{name}{suffix}_headlines_per_s"] = round(len(texts) / (time.perf_counter() - started), 1)
        params = with_recipe(load_params(section, ROOT / "params.yaml")) | {"epochs": 1}
        records = gold_records(args.train_records)
        with tempfile.TemporaryDirectory() as scratch:
            trained = module.train(params, records[:-16], records[-16:], Path(scratch) / "model")
        result[f"{name}_train_steps_per_s"] = round(trained["train_steps_per_s"], 2)
    print(json.dumps(result | {"headlines": len(texts), "batch_size": args.batch_size}))


if __name__ == "__main__":
    main()
