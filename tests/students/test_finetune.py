"""The finetune stages' quality gate (stages/students/finetune.py): a student below its section's min_valid_f1 stops
the stage and leaves no model; one below its teacher on the same human-labelled validation headlines is a warning,
and the teacher's F1 is in the metrics."""

import json
import logging
from pathlib import Path

import polars as pl
import pytest
import yaml

from stages.core.errors import PipelineError
from stages.core.schema import SPANS
from stages.students import gliner as gliner_student
from stages.students.config import FinetuneGlinerParams, PredictParams
from stages.students.finetune import below_teacher, finetune_main, teacher_valid_f1, train_student
from stages.students.registry import STUDENTS, training_params
from stages.students.training import TrainingResult
from tests.helpers import ROOT, STUDENT_NAMES, TINY_RECIPES, project, shipped_params

ARGV = [
    "--train",
    "train.parquet",
    "--valid",
    "valid.parquet",
    "--out",
    "models/gliner",
    "--metrics",
    "metrics.json",
    "--history",
    "epochs.csv",
]


def reviewed(records: list[dict], teacher: dict[str, list] | None = None, human: bool = True) -> pl.DataFrame:
    """A reviewed split as argilla_review writes it: the records' spans as the (human) label, the teacher's beside
    them (its spans per id; the label where not given)."""
    teacher = teacher or {}
    return pl.DataFrame(
        {
            "id": [r["id"] for r in records],
            "text": [r["text"] for r in records],
            "label_source": ["human" if human else "llm"] * len(records),
            "label_spans": [r["spans"] for r in records],
            "teacher_spans": [teacher.get(r["id"], r["spans"]) for r in records],
            "valid": [True] * len(records),
        },
        schema={
            "id": pl.String,
            "text": pl.String,
            "label_source": pl.String,
            "label_spans": SPANS,
            "teacher_spans": SPANS,
            "valid": pl.Boolean,
        },
    )


def finetune_project(directory: Path, train: list[dict], valid: pl.DataFrame, **section) -> Path:
    params = shipped_params()
    params["finetune_gliner"].update(section)
    return project(directory, params, tables={"train.parquet": reviewed(train), "valid.parquet": valid})


class FakeStudent:
    """A student whose training reaches a given valid F1 (and writes a model folder), for the gate's rules; it
    notes each training's base model and records."""

    NAME = "gliner"

    def __init__(self, f1: float):
        self.f1 = f1
        self.trainings: list[tuple[str, list[dict]]] = []

    def train(self, training, train_records, valid_records, out_dir: Path) -> TrainingResult:
        self.trainings.append((training.base_model, list(train_records)))
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "weights").write_text("weights")
        row = {"epoch": 1, "train_loss": 1.0, "valid_precision": self.f1, "valid_recall": self.f1, "valid_f1": self.f1}
        return TrainingResult([row], 1, self.f1, None)


def test_the_warning_comes_when_the_student_is_below_its_teacher_on_human_labels_only():
    assert below_teacher("finetune_gliner", 0.80, 0.75, 54) is None
    assert below_teacher("finetune_gliner", 0.75, 0.75, 54) is None  # level with it: no warning
    assert below_teacher("finetune_gliner", 0.10, None, 0) is None  # no human label: the teacher is the reference
    warning = below_teacher("finetune_spanmarker", 0.70, 0.7512, 54)
    assert warning and len(warning.splitlines()) == 1
    assert warning.startswith("finetune_spanmarker: best valid F1 0.7000 is below the teacher's 0.7512 on the same 54")


def test_the_teachers_valid_f1_is_its_spans_against_the_human_labels_of_the_human_labelled_records():
    apple, visa = {"start": 0, "end": 5, "text": "Apple"}, {"start": 0, "end": 4, "text": "Visa"}
    valid = pl.DataFrame(
        {"id": ["a", "b", "c"], "teacher_spans": [[apple], None, [visa]]},
        schema={"id": pl.String, "teacher_spans": SPANS},
    )
    records = [
        {"id": "a", "text": "Apple Up", "spans": [apple], "label_source": "human"},
        {"id": "b", "text": "Visa Up", "spans": [visa], "label_source": "human"},  # invalid answer: no span
        {"id": "c", "text": "Visa Down", "spans": [visa], "label_source": "llm"},  # not human: not scored
    ]
    assert teacher_valid_f1(valid, records) == pytest.approx(0.6667)
    assert teacher_valid_f1(valid, records[2:]) is None


def test_a_student_below_the_floor_stops_the_stage_and_leaves_no_model(tmp_path, monkeypatch, labelled_headlines):
    monkeypatch.chdir(finetune_project(tmp_path, labelled_headlines[:20], reviewed(labelled_headlines[20:])))
    with pytest.raises(PipelineError) as error:
        finetune_main(FinetuneGlinerParams, "GLiNER", FakeStudent(0.0), ARGV)
    assert str(error.value).startswith(
        "finetune_gliner: best valid F1 0.0000 is below the floor finetune_gliner.min_valid_f1 = 0.05: no model"
    )
    assert len(str(error.value).splitlines()) == 1
    assert not any(Path(name).exists() for name in ("models/gliner", "metrics.json", "epochs.csv"))


def test_a_student_below_its_teacher_ships_with_one_warning_and_the_teachers_f1_in_the_metrics(
    tmp_path, monkeypatch, caplog, labelled_headlines
):
    valid = labelled_headlines[20:]
    monkeypatch.chdir(finetune_project(tmp_path, labelled_headlines[:20], reviewed(valid)))  # teacher = humans
    with caplog.at_level(logging.WARNING):
        finetune_main(FinetuneGlinerParams, "GLiNER", FakeStudent(0.5), ARGV)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        f"finetune_gliner: best valid F1 0.5000 is below the teacher's 1.0000 on the same {len(valid)} "
        "human-labelled validation headlines: the student does not beat the labels it learned from "
        "(review more train headlines, train longer or on another recipe)"
    ]
    metrics = json.loads(Path("metrics.json").read_text())
    assert (metrics["best_valid_f1"], metrics["teacher_valid_f1"]) == (0.5, 1.0)
    assert Path("models/gliner/weights").exists()

    caplog.clear()  # a student level with the teacher, or with no human label to compare on: no warning
    finetune_main(FinetuneGlinerParams, "GLiNER", FakeStudent(1.0), ARGV)
    Path("valid.parquet").unlink()
    reviewed(valid, human=False).write_parquet("valid.parquet")
    finetune_main(FinetuneGlinerParams, "GLiNER", FakeStudent(0.5), ARGV)
    assert not [r for r in caplog.records if r.levelno == logging.WARNING]
    assert json.loads(Path("metrics.json").read_text())["teacher_valid_f1"] is None


def test_pretrain_trains_on_every_teacher_label_then_on_the_human_labels_from_that_checkpoint(
    tmp_path, monkeypatch, labelled_headlines
):
    """Half the train split reviewed: the first training takes the teacher's labels of all 20 headlines, the second
    only the 10 human labels, from the first one's folder."""
    train = reviewed(labelled_headlines[:20], teacher={r["id"]: [] for r in labelled_headlines[:20]})
    train = train.with_columns(
        label_source=pl.when(pl.int_range(pl.len()) < 10).then(pl.lit("human")).otherwise(pl.lit("llm"))
    )
    directory = finetune_project(tmp_path, [], reviewed(labelled_headlines[20:]), unreviewed="pretrain")
    train.write_parquet(directory / "train.parquet")
    monkeypatch.chdir(directory)
    student = FakeStudent(0.9)
    finetune_main(FinetuneGlinerParams, "GLiNER", student, ARGV)
    (first_base, first), (second_base, second) = student.trainings
    assert first_base == "local-minilm" and len(first) == 20
    assert {r["label_source"] for r in first} == {"llm"} and all(r["spans"] == [] for r in first)  # the teacher's
    assert Path(second_base).name == "model" and Path(second_base).parent.name.startswith("pretrained-")
    assert [r["id"] for r in second] == [r["id"] for r in labelled_headlines[:10]]
    assert [r["spans"] for r in second] == [r["spans"] for r in labelled_headlines[:10]]  # the human labels
    assert any(r["spans"] for r in second) and {r["label_source"] for r in second} == {"human"}
    metrics = json.loads(Path("metrics.json").read_text())
    assert (metrics["train_records"], metrics["pretrain_records"], metrics["pretrain_best_valid_f1"]) == (10, 20, 0.9)
    assert not Path(second_base).exists()  # the first model was scratch


def test_without_pretrain_the_student_trains_once(tmp_path, monkeypatch, labelled_headlines):
    monkeypatch.chdir(finetune_project(tmp_path, labelled_headlines[:20], reviewed(labelled_headlines[20:])))
    student = FakeStudent(0.9)
    finetune_main(FinetuneGlinerParams, "GLiNER", student, ARGV)
    assert len(student.trainings) == 1
    metrics = json.loads(Path("metrics.json").read_text())
    assert (metrics["pretrain_records"], metrics["pretrain_best_valid_f1"]) == (None, None)


@pytest.mark.slow
@pytest.mark.parametrize("name", STUDENT_NAMES)
def test_a_real_pretrained_student_reloads_and_names_no_scratch_folder(name, tmp_path, labelled_headlines):
    """Both students fine-tune from their own first checkpoint; the saved folder points at nothing of this machine
    (it would differ from run to run, and DVC's hashes with it)."""
    training = training_params(name, ROOT / "params.yaml").model_copy(update=TINY_RECIPES[name] | {"epochs": 2})
    result, first = train_student(
        STUDENTS[name],
        training,
        labelled_headlines[:10],
        labelled_headlines[20:],
        tmp_path / "model",
        pretrain_on=labelled_headlines[:20],
    )
    assert first is not None and len(first.history) == len(result.history) == 2
    for path in (tmp_path / "model").rglob("*"):
        if path.is_file() and path.suffix in {".json", ".txt", ".md"}:
            assert "pretrained-" not in path.read_text(), f"{path} names the scratch checkpoint"
    assert len(STUDENTS[name].load(tmp_path / "model")(["Apple buys Beats"])) == 1


def test_every_student_has_its_decode_settings_in_params():
    decoding = PredictParams.model_validate(shipped_params()["predict"])
    assert set(PredictParams.model_fields) == set(STUDENTS)
    assert decoding.decode("gliner") == {"threshold": 0.5} and decoding.decode("spanmarker") == {}
    assert gliner_student.TRAINING_THRESHOLD == 0.5  # what the students were always selected at


@pytest.mark.slow
def test_a_real_tiny_training_below_the_floor_writes_no_model(tmp_path, monkeypatch, labelled_headlines):
    """GLiNER, one epoch on 20 headlines (its span head starts from scratch), cannot reach a floor of 1.0."""
    directory = finetune_project(tmp_path, labelled_headlines[:20], reviewed(labelled_headlines[20:]), min_valid_f1=1.0)
    params = yaml.safe_load((directory / "params.yaml").read_text())
    section = params["finetune_gliner"]
    recipe = {**TINY_RECIPES["gliner"], "epochs": 1}
    section["max_width"] = recipe.pop("max_width")
    section["recipes"][section["recipe"]].update(recipe)
    (directory / "params.yaml").write_text(yaml.safe_dump(params))
    monkeypatch.chdir(directory)
    with pytest.raises(PipelineError, match=r"^finetune_gliner: best valid F1 0\.\d{4} is below the floor "):
        finetune_main(FinetuneGlinerParams, "GLiNER", gliner_student, ARGV)
    assert not any(Path(name).exists() for name in ("models/gliner", "models/gliner.partial", "metrics.json"))
