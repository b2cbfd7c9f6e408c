"""The experiment harness every experiment script shares (learning curve, review priority, real headlines,
whole-feed recipes).

A `Run` is the directory of one pipeline run: this working tree after `dvc repro`, or a real-headline run's
scratch copy. It gives that run's reviewed splits, its recipe for each student (any seed) and the records to
score on. `train_and_score` trains a student on given records in a scratch folder and scores it on any named
record sets (valid, test, an extra set) with evaluate's bootstrap CI, decoding as the run's `predict` params say
(as evaluate and tag do); `trained` keeps the trained folder for more than scoring, `score_folder` scores a
folder, and `with_export` scores the student's servable int8 form too. `over_seeds` sums one figure up over
seeds: the mean, the spread and the mean CI of one run."""

from __future__ import annotations

import hashlib
import json
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from statistics import mean, stdev

import polars as pl

from stages.core.metrics import score
from stages.core.params import load_params
from stages.core.paths import dvc_paths
from stages.core.schema import SPLITS
from stages.core.stage_params import Bootstrap, EvaluateParams
from stages.labels.records import HUMAN, LLM, human_or_all, human_records, labelled_records
from stages.students.config import GlinerTraining, PredictParams, SpanMarkerTraining
from stages.students.finetune import train_student
from stages.students.registry import STUDENTS, training_params

ROOT = Path(__file__).resolve().parents[1]

SCORE_KEYS = ("f1", "f1_ci_low", "f1_ci_high", "precision", "recall")
Records = list[dict]
Scorer = Callable[[Records, list[list[dict]]], dict]  # (gold records, predictions) -> figures


@dataclass(frozen=True)
class Run:
    """One pipeline run's directory (its dvc.yaml, params.yaml and what its last `dvc repro` wrote)."""

    root: Path = ROOT

    @cached_property
    def paths(self) -> dict[str, Path]:
        return dvc_paths(self.root)

    def splits(self) -> dict[str, pl.DataFrame]:
        return {name: pl.read_parquet(self.paths["reviewed"] / f"{name}.parquet") for name in SPLITS}

    def human_test(self, test: pl.DataFrame) -> Records:
        records = human_records(labelled_records(test))
        if not records:
            raise SystemExit(
                f"no human-labelled test headline in {self.paths['reviewed'] / 'test.parquet'}: "
                "this experiment needs them"
            )
        return records

    @staticmethod
    def validation(valid: pl.DataFrame) -> Records:
        """The records the finetune stages pick the best epoch on."""
        return human_or_all(labelled_records(valid))

    def training(self, student: str, seed: int | None = None) -> GlinerTraining | SpanMarkerTraining:
        """The run's recipe for a student, with another seed where given."""
        training = training_params(student, self.root / "params.yaml")
        return training if seed is None else training.model_copy(update={"seed": seed})

    @cached_property
    def bootstrap(self) -> Bootstrap:
        return load_params(EvaluateParams, self.root / "params.yaml").bootstrap

    def decode(self, student: str) -> dict:
        return load_params(PredictParams, self.root / "params.yaml").decode(student)

    def scores(self, records: Records, predicted: list[list[dict]]) -> dict:
        """P, R, F1 and its bootstrap CI, as evaluate reports them."""
        result = score(records, predicted, self.bootstrap)
        return {k: result[k] for k in SCORE_KEYS}

    def kept(self, name: str, depends_on: object, compute: Callable[[], dict]) -> dict:
        """compute()'s result with the seconds it took, kept in the run's directory (experiments/) under a digest
        of the run's reviewed splits and `depends_on` (JSON: the recipe, decode and scoring settings, the seed):
        a rerun, or another experiment that needs the same result, reads it instead of training again, and a
        changed input computes it anew. Hours of training are not lost to a stop halfway."""
        digest = hashlib.sha256(json.dumps(depends_on, sort_keys=True, default=str).encode())
        for split in SPLITS:
            digest.update((self.paths["reviewed"] / f"{split}.parquet").read_bytes())
        path = self.root / "experiments" / f"{name}-{digest.hexdigest()[:16]}.json"
        if path.is_file():
            return json.loads(path.read_text())
        started = time.perf_counter()
        result = compute() | {"seconds": round(time.perf_counter() - started)}  # on this machine
        path.parent.mkdir(exist_ok=True)
        path.write_text(json.dumps(result, sort_keys=True))
        return result

    def teacher_score(self, test_frame: pl.DataFrame, test: Records) -> dict:
        spans = dict(zip(test_frame["id"], test_frame["teacher_spans"].to_list()))
        return self.scores(test, [spans[r["id"]] or [] for r in test])


def training_records(train: pl.DataFrame, reviewed: set[str], rule: str) -> Records:
    """A simulated review of a train split, by id: the reviewed headlines with their human label; the others with
    the teacher's (keep, valid answers only) or left out (drop)."""
    records = []
    for row in train.sort("id").iter_rows(named=True):
        if row["id"] in reviewed:
            records.append(
                {"id": row["id"], "text": row["text"], "spans": row["label_spans"] or [], "label_source": HUMAN}
            )
        elif rule == "keep" and row["valid"]:
            records.append(
                {"id": row["id"], "text": row["text"], "spans": row["teacher_spans"] or [], "label_source": LLM}
            )
    return records


def score_folder(
    run: Run, student: str, folder: Path, sets: Mapping[str, Records], scorer: Scorer | None = None
) -> dict[str, dict]:
    """{set name: scores} of a saved or exported student folder on each record set (scorer: run.scores)."""
    predict = STUDENTS[student].load(folder, False, run.decode(student))
    figures = scorer or run.scores
    return {name: figures(records, predict([r["text"] for r in records], 32)) for name, records in sets.items()}


def with_export(
    run: Run, student: str, model: Path, sets: Mapping[str, Records], scorer: Scorer | None = None
) -> dict[str, dict]:
    """score_folder of the model and of its servable int8 form (as the export stage builds it, without the
    security master): {"model": {set: scores}, "export": {set: scores}}."""
    from stages.serving.package import servable_folder

    with tempfile.TemporaryDirectory() as scratch:
        servable_folder(STUDENTS[student], model, Path(scratch) / "export", run.decode(student))
        return {
            "model": score_folder(run, student, model, sets, scorer),
            "export": score_folder(run, student, Path(scratch) / "export", sets, scorer),
        }


def train_and_score(
    run: Run,
    student: str,
    training: GlinerTraining | SpanMarkerTraining,
    train: Records,
    valid: Records,
    sets: Mapping[str, Records],
    export: bool = False,
    scorer: Scorer | None = None,
    pretrain_on: Records | None = None,
) -> dict:
    """Train a student in a scratch folder (best epoch on `valid`, as the finetune stages pick it; first on
    pretrain_on where given) and score it on each record set: {set: scores}, or with_export's
    {"model": ..., "export": ...} when export."""
    with trained(student, training, train, valid, pretrain_on) as model:
        if export:
            return with_export(run, student, model, sets, scorer)
        return score_folder(run, student, model, sets, scorer)


@contextmanager
def trained(
    student: str,
    training: GlinerTraining | SpanMarkerTraining,
    train: Records,
    valid: Records,
    pretrain_on: Records | None = None,
) -> Iterator[Path]:
    """The folder of a student trained in scratch space as the finetune stages train (best epoch on `valid`; first
    on pretrain_on where given), removed afterwards."""
    with tempfile.TemporaryDirectory() as scratch:
        train_student(STUDENTS[student], training, train, valid, Path(scratch) / "model", pretrain_on)
        yield Path(scratch) / "model"


def over_seeds(runs: list[dict]) -> dict:
    """One model's scores over seeds: the mean and sample standard deviation of F1, its lowest and highest, the
    mean precision and recall, and the mean bounds of one run's 95% bootstrap CI."""
    f1 = [r["f1"] for r in runs]
    return {
        "seeds": len(runs),
        "f1_mean": round(mean(f1), 4),
        "f1_sd": round(stdev(f1), 4) if len(f1) > 1 else 0.0,
        "f1_min": min(f1),
        "f1_max": max(f1),
        "precision_mean": round(mean(r["precision"] for r in runs), 4),
        "recall_mean": round(mean(r["recall"] for r in runs), 4),
        "one_run_ci_low": round(mean(r["f1_ci_low"] for r in runs), 4),
        "one_run_ci_high": round(mean(r["f1_ci_high"] for r in runs), 4),
    }


def seed_cell(figures: dict) -> str:
    """over_seeds() in a table cell: mean ± standard deviation [lowest, highest]."""
    return f"{figures['f1_mean']:.3f} ± {figures['f1_sd']:.3f} [{figures['f1_min']:.3f}, {figures['f1_max']:.3f}]"


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
