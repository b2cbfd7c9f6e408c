"""The learning curve's table: spread over seeds per label source, and what human labels add seed by seed."""

import polars as pl

from scripts import learning_curve
from scripts.student_runs import ROOT


def point(labels: str, n: int, seed: int, f1: float) -> dict:
    return {"student": "gliner", "labels": labels, "n": n, "seed": seed, "f1": f1}


def scored(row: dict) -> dict:
    return row | {"f1_ci_low": row["f1"] - 0.05, "f1_ci_high": row["f1"] + 0.05, "precision": 0.5, "recall": 0.5}


def test_the_table_pairs_each_seeds_human_and_teacher_models():
    rows = [
        scored(point(labels, n, seed, f1))
        for labels, n, seed, f1 in [
            ("human", 100, 0, 0.60),
            ("human", 100, 1, 0.70),
            ("teacher", 100, 0, 0.50),
            ("teacher", 100, 1, 0.40),
            ("human", 1200, 0, 0.85),
            ("human", 1200, 1, 0.85),
            ("teacher", 1200, 0, 0.60),
            ("teacher", 1200, 1, 0.70),
        ]
    ]
    lines = learning_curve.markdown_table(rows).splitlines()
    # seed 0 gains 0.10, seed 1 0.30: the mean gain is 0.20, and the sizes come in order
    assert lines[4] == (
        "| gliner | 100 | 0.650 ± 0.071 [0.600, 0.700] | 0.450 ± 0.071 [0.400, 0.500] | +0.200 [+0.100, +0.300] "
        "| [0.600, 0.700] |"
    )
    assert lines[5].startswith("| gliner | 1,200 | 0.850 ± 0.000 [0.850, 0.850] |")
    assert "+0.200 [+0.150, +0.250]" in lines[5]


def test_the_docs_table_is_the_committed_real_curve():
    rows = pl.read_csv(ROOT / "metrics/real_learning_curve.csv").to_dicts()
    docs = (ROOT / "docs/real-headlines.md").read_text()
    assert learning_curve.markdown_table(rows) in docs, "rerun: python -m scripts.learning_curve --name ... --table"
