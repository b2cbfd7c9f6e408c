"""How good are the teacher and the students really? Scores against the hand-made gold spans of the
embedded sample (tests/fixtures/sample_gold.jsonl), which the pipeline itself never reads.

Run after `make demo`: teacher labels (data/labels) on every labelled headline, students (models/) and
teacher on the test split. Prints one JSON line.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import polars as pl

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from stages import finetune_gliner, finetune_spanmarker  # noqa: E402
from stages.common.metrics import entity_scores  # noqa: E402


def main() -> None:
    with open(ROOT / "tests/fixtures/sample_gold.jsonl", encoding="utf-8") as f:
        gold = {(row["date"], row["text"]): row["spans"] for row in map(json.loads, f)}
    labels = pl.read_parquet(ROOT / "data/labels/llm_labels.parquet")
    keys = [(str(d), t) for d, t in zip(labels["date"], labels["text"])]
    result = {"teacher_all_labelled": entity_scores([gold[k] for k in keys], labels["spans"].to_list()),
              "labelled": labels.height}
    test = pl.read_parquet(ROOT / "data/reviewed/test.parquet")
    test_keys = [(str(d), t) for d, t in zip(test["date"], test["text"])]
    test_gold = [gold[k] for k in test_keys]
    result["teacher_test"] = entity_scores(test_gold, test["llm_spans"].to_list())
    for name, module in (("gliner", finetune_gliner), ("spanmarker", finetune_spanmarker)):
        _, predict = module.load(ROOT / "models" / name)
        result[f"{name}_test"] = entity_scores(test_gold, predict(test["text"].to_list()))
    result["test_headlines"] = test.height
    print(json.dumps({k: ({m: v[m] for m in ("precision", "recall", "f1")} if isinstance(v, dict) else v)
                      for k, v in result.items()}))


if __name__ == "__main__":
    main()
