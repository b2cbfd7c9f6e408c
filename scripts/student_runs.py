"""What the experiment scripts share: the reviewed splits the last `dvc repro` wrote, the human-labelled
test records, and "train a student on these records, score it on those" with evaluate's bootstrap CI."""

from __future__ import annotations

import tempfile
from pathlib import Path

import polars as pl

from stages.core.metrics import score
from stages.core.params import load_params
from stages.core.paths import dvc_paths
from stages.core.schema import SPLITS
from stages.core.stage_params import EvaluateParams
from stages.labels.records import human_or_all, human_records, labelled_records
from stages.students.registry import STUDENTS, training_params

ROOT = Path(__file__).resolve().parents[1]

PATHS = dvc_paths(ROOT)
SCORE_KEYS = ("f1", "f1_ci_low", "f1_ci_high", "precision", "recall")


def reviewed_splits() -> dict[str, pl.DataFrame]:
    return {name: pl.read_parquet(PATHS["reviewed"] / f"{name}.parquet") for name in SPLITS}


def human_test(test: pl.DataFrame) -> list[dict]:
    records = human_records(labelled_records(test))
    if not records:
        raise SystemExit(
            f"no human-labelled test headline in {PATHS['reviewed'] / 'test.parquet'}: this experiment needs them"
        )
    return records


def validation(valid: pl.DataFrame) -> list[dict]:
    return human_or_all(labelled_records(valid))


def student_params(name: str):
    return training_params(name, ROOT / "params.yaml")


def bootstrap():
    return load_params(EvaluateParams, ROOT / "params.yaml").bootstrap


def train_and_score(name: str, training, train: list[dict], valid: list[dict], test: list[dict]) -> dict:
    """Train a student in a scratch directory and score it on the test records (P, R, F1 and its CI)."""
    with tempfile.TemporaryDirectory() as scratch:
        STUDENTS[name].train(training, train, valid, Path(scratch) / "model")
        predict = STUDENTS[name].load(Path(scratch) / "model")
        result = score(test, predict([r["text"] for r in test]), bootstrap())
    return {k: result[k] for k in SCORE_KEYS}


def teacher_score(test_frame: pl.DataFrame, test: list[dict]) -> dict:
    spans = dict(zip(test_frame["id"], test_frame["teacher_spans"].to_list()))
    result = score(test, [spans[r["id"]] or [] for r in test], bootstrap())
    return {k: result[k] for k in SCORE_KEYS}


def plot_f1(path: Path, title: str, xlabel: str, series: list[dict], teacher_f1: float) -> None:
    """F1 lines ({label, x, f1, style[, low, high]}: a shaded CI band when given) with the teacher's F1 as a
    reference line, rendered offline to a PNG that holds no version stamp (it depends on the data only)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 4.2), dpi=120)
    for line in series:
        axis.plot(line["x"], line["f1"], line["style"], label=line["label"])
        if "low" in line:
            axis.fill_between(line["x"], line["low"], line["high"], alpha=0.12)
    axis.axhline(teacher_f1, color="grey", linestyle=":", label=f"teacher itself ({teacher_f1:.2f})")
    axis.set_xlabel(xlabel)
    axis.set_ylabel("test F1 vs human labels")
    axis.set_ylim(0, 1)
    axis.legend(loc="lower right", fontsize=8)
    axis.set_title(title)
    figure.tight_layout()
    figure.savefig(path, metadata={"Software": None})
    plt.close(figure)
