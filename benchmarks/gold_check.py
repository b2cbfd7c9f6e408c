"""How good is the teacher really? Scores the labels of the last llm_label run against the hand-made spans
of the embedded sample (data/sample/reviewer_labels.jsonl) over every labelled headline, with that run's
hallucinated mentions, answers cut by length, invalid answers and headlines/s (metrics/llm_label.json).

Run after `dvc repro llm_label` (or `make demo`). Prints one JSON line. The students are scored against
human labels by the evaluate stage.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import polars as pl

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from stages.common.metrics import entity_scores  # noqa: E402


def main() -> None:
    with open(ROOT / "data/sample/reviewer_labels.jsonl", encoding="utf-8") as f:
        gold = {(row["date"], row["text"]): row["spans"] for row in map(json.loads, f)}
    labels = pl.read_parquet(ROOT / "data/labels/llm_labels.parquet")
    run = json.loads((ROOT / "metrics/llm_label.json").read_text())
    keys = [(str(d), t) for d, t in zip(labels["date"], labels["text"])]
    scores = entity_scores([gold[k] for k in keys], labels["spans"].to_list())
    print(json.dumps({"labelled": labels.height, "teacher_precision": scores["precision"],
                      "teacher_recall": scores["recall"], "teacher_f1": scores["f1"],
                      "hallucinated_mentions": run["hallucinated_mentions"],
                      "length_finish": run["finish_reason"].get("length", 0), "invalid": run["invalid_answers"],
                      "headlines_per_s": run.get("headlines_per_s")}))


if __name__ == "__main__":
    main()
