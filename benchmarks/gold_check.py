"""How good is the teacher really? Scores the labels of the last llm_label run against hand-made spans (by
default the embedded sample's, data/sample/reviewer_labels.jsonl) over every labelled headline, with that
run's hallucinated mentions, answers cut by length, invalid answers (metrics/llm_label.json) and headlines/s
(metrics/speed/llm_label.json).

Run after `dvc repro llm_label` (or `make demo`). Prints one JSON line. The students are scored against
human labels by the evaluate stage.
Usage: python -m benchmarks.gold_check [--labels data/labels/llm_labels.parquet] [--metrics metrics/llm_label.json]
       [--speed metrics/speed/llm_label.json] [--gold data/sample/reviewer_labels.jsonl]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import polars as pl

from stages.core.metrics import entity_scores
from stages.core.paths import dvc_paths

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--labels", type=Path, default=dvc_paths()["labels"])
    parser.add_argument("--metrics", type=Path, default=ROOT / "metrics/llm_label.json")
    parser.add_argument("--speed", type=Path, default=ROOT / "metrics/speed/llm_label.json")
    parser.add_argument(
        "--gold", type=Path, default=ROOT / "data/sample/reviewer_labels.jsonl", help="JSONL of {date, text, spans}"
    )
    args = parser.parse_args()
    with open(args.gold, encoding="utf-8") as f:
        gold = {(row["date"], row["text"]): row["spans"] for row in map(json.loads, f)}
    labels = pl.read_parquet(args.labels)
    run = json.loads(args.metrics.read_text())
    speed = json.loads(args.speed.read_text()) if args.speed.exists() else {}
    keys = [(str(d), t) for d, t in zip(labels["date"], labels["text"])]
    scores = entity_scores([gold[k] for k in keys], labels["teacher_spans"].to_list())
    print(
        json.dumps(
            {
                "labelled": labels.height,
                "teacher_precision": scores["precision"],
                "teacher_recall": scores["recall"],
                "teacher_f1": scores["f1"],
                "hallucinated_mentions": run["hallucinated_mentions"],
                "length_finish": run["finish_reason"].get("length", 0),
                "invalid": run["invalid_answers"],
                "headlines_per_s": speed.get("headlines_per_s", run.get("headlines_per_s")),  # older runs: in metrics
            }
        )
    )


if __name__ == "__main__":
    main()
