"""The one main() of both finetune stages: reviewed splits in; the best-epoch model (with its predict settings and
a training summary beside it), metrics and per-epoch history out. The servable folder and its model card are the
export stage's (stages/export.py), so editing them retrains nothing.

A quality gate: a student whose best validation F1 is below its section's `min_valid_f1` stops the stage and
leaves no model (nothing downstream exports or tags it); one that does not beat its teacher on the same
human-labelled validation headlines is logged as a warning, with the teacher's F1 in the metrics.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import polars as pl

from stages.core.cli import stage_args
from stages.core.errors import InputError, PipelineError
from stages.core.io import log, read_table, write_csv, write_json
from stages.core.metrics import entity_scores
from stages.core.params import load_params
from stages.core.schema import Record
from stages.labels.records import (
    LABEL_COLUMNS,
    UnreviewedRule,
    human_or_all,
    human_records,
    labelled_records,
    unreviewed_rule,
)
from stages.students.config import ChoosesRecipe, GlinerTraining, SpanMarkerTraining
from stages.students.interface import Student
from stages.students.settings import TrainingSummary, write_summary
from stages.students.training import HISTORY_FIELDS, TrainingResult


def stage_records(train: pl.DataFrame, unreviewed: UnreviewedRule) -> tuple[list[Record], list[Record] | None]:
    """What a finetune stage trains on from the reviewed train split (LABEL_COLUMNS), as `unreviewed` says: the
    records of its training, and those of a pretraining before it (pretrain: the teacher's labels of every validly
    answered train headline, reviewed or not; otherwise None)."""
    records = unreviewed_rule(labelled_records(train), unreviewed)
    return records, labelled_records(train, "teacher") if unreviewed == "pretrain" else None


def train_student(
    student: Student,
    training: GlinerTraining | SpanMarkerTraining,
    train: list[Record],
    valid: list[Record],
    out_dir: Path,
    pretrain_on: list[Record] | None = None,
) -> tuple[TrainingResult, TrainingResult | None]:
    """The student trained on `train` into out_dir, best epoch on `valid`; with pretrain_on, first trained on those
    records and then on `train` from that checkpoint, the recipe the same both times. Returns the training's result
    and the pretraining's (None without one).

    Why pretrain: at a small review budget the teacher's labels of the unreviewed headlines are worth more as a
    first model than mixed in with the human labels (`keep`): on real news and on the demo (docs/real-headlines.md)."""
    if pretrain_on is None:
        return student.train(training, train, valid, out_dir), None
    with tempfile.TemporaryDirectory(prefix="pretrained-") as scratch:
        first = student.train(training, pretrain_on, valid, Path(scratch) / "model")
        log.info("pretrained on %d teacher-labelled records: valid F1 %.4f", len(pretrain_on), first.best_valid_f1)
        from_first = training.model_copy(update={"base_model": str(Path(scratch) / "model"), "revision": None})
        return student.train(from_first, train, valid, out_dir), first


def run_params(section) -> dict:
    """The run's params as the card shows them: every key of the finetune section but `recipes`, with the chosen
    recipe's keys."""
    return section.model_dump(exclude={"recipes"}) | section.recipes[section.recipe].model_dump()


def label_examples(records: list[Record], count: int = 3) -> list[dict]:
    """The first few training records that name a company (records come sorted by id: a fixed choice)."""
    return [{"text": r["text"], "spans": r["spans"]} for r in records if r["spans"]][:count]


def teacher_valid_f1(valid: pl.DataFrame, records: list[Record]) -> float | None:
    """The teacher's entity F1 on the human-labelled validation records (its `teacher_spans` against their human
    labels, an invalid answer counting as no span, as evaluate scores it); None when no record is human-labelled
    (the reference would be the teacher's own labels)."""
    human = human_records(records)
    if not human:
        return None
    teacher = dict(zip(valid["id"].to_list(), valid["teacher_spans"].to_list()))
    return entity_scores([r["spans"] for r in human], [teacher[r["id"]] or [] for r in human])["f1"]


def below_teacher(section_name: str, student_f1: float, teacher_f1: float | None, records: int) -> str | None:
    """The warning to log when the student's best valid F1 is below its teacher's on the same human-labelled
    validation records (None when it is not, or when there is no human label to compare on)."""
    if teacher_f1 is None or student_f1 >= teacher_f1:
        return None
    return (
        f"{section_name}: best valid F1 {student_f1:.4f} is below the teacher's {teacher_f1:.4f} on the same "
        f"{records} human-labelled validation headlines: the student does not beat the labels it learned from "
        "(review more train headlines, train longer or on another recipe)"
    )


def below_floor(section_name: str, student_f1: float, floor: float) -> PipelineError:
    """The quality gate's one line: the section, the F1 and the floor."""
    return PipelineError(
        f"{section_name}: best valid F1 {student_f1:.4f} is below the floor {section_name}.min_valid_f1 = {floor}: "
        "no model written (more human labels, more epochs or another recipe; or lower the floor in params.yaml)"
    )


def finetune_main(
    params_model: type[ChoosesRecipe], title: str, student: Student, argv: list[str] | None = None
) -> None:
    """`student` is the student's module, as the registry holds it (registry.py)."""
    section_name = params_model.SECTION
    args = stage_args(
        f"{section_name}: fine-tune on the reviewed train split", ("train", "valid", "out", "metrics", "history"), argv
    )
    section = load_params(params_model)
    training = section.training()
    valid = read_table(args.valid, LABEL_COLUMNS)
    train, pretrain_on = stage_records(read_table(args.train, LABEL_COLUMNS), training.unreviewed)
    records = {"train": train, "valid": human_or_all(labelled_records(valid))}
    if not records["train"] or not records["valid"]:
        raise InputError(
            f"{section_name}: need labelled train and valid records, have {len(records['train'])} and "
            f"{len(records['valid'])}"
            + (
                " (unreviewed: pretrain fine-tunes on human and auto-accepted labels only)"
                if pretrain_on is not None
                else ""
            )
        )
    sizes = {name: len(rs) for name, rs in records.items()}
    sizes |= {f"{name}_human": len(human_records(rs)) for name, rs in records.items()}
    log.info(
        "%s: %d train records (%d human-labelled), %d valid records (%d human-labelled), base %s%s",
        section_name,
        sizes["train"],
        sizes["train_human"],
        sizes["valid"],
        sizes["valid_human"],
        training.base_model,
        "" if pretrain_on is None else f", pretrained first on {len(pretrain_on)} teacher-labelled records",
    )
    if training.unreviewed == "keep" and 0 < sizes["train_human"] < sizes["train"]:
        log.info(
            "%s: %d unreviewed train records train with the teacher's labels (unreviewed: keep); on real news with a "
            "quarter of train reviewed, unreviewed: pretrain scored 0.13 F1 higher (docs/real-headlines.md)",
            section_name,
            sizes["train"] - sizes["train_human"],
        )
    result, pretrained = train_student(student, training, records["train"], records["valid"], args.out, pretrain_on)
    if result.best_valid_f1 < training.min_valid_f1:
        shutil.rmtree(args.out)  # a student below the floor must not ship: no model for export or tag to pick up
        raise below_floor(section_name, result.best_valid_f1, training.min_valid_f1)
    teacher_f1 = teacher_valid_f1(valid, records["valid"])
    warning = below_teacher(section_name, result.best_valid_f1, teacher_f1, sizes["valid_human"])
    if warning:
        log.warning(warning)
    summary = TrainingSummary(
        student=student.NAME,
        title=title,
        base_model=training.base_model,
        revision=training.revision,
        entity_label=training.entity_label,
        epochs=training.epochs,
        sizes=sizes,
        best=result.best_row,
        params=run_params(section),
        examples=label_examples(records["train"]),
    )
    write_summary(args.out, summary)
    write_csv(args.history, result.history, HISTORY_FIELDS)
    write_json(
        args.metrics,
        {
            "train_records": sizes["train"],
            "valid_records": sizes["valid"],
            "train_human_labelled": sizes["train_human"],
            "valid_human_labelled": sizes["valid_human"],
            "best_epoch": result.best_epoch,
            "best_valid_f1": result.best_valid_f1,
            "teacher_valid_f1": teacher_f1,  # on the same human-labelled valid records (null: none is)
            # unreviewed: pretrain: the first training's records and best valid F1 (null: no pretraining)
            "pretrain_records": None if pretrain_on is None else len(pretrain_on),
            "pretrain_best_valid_f1": None if pretrained is None else pretrained.best_valid_f1,
        },
    )
    log.info(
        "%s: best epoch %d, valid F1 %.4f (teacher %s) -> %s",
        section_name,
        result.best_epoch,
        result.best_valid_f1,
        "not scored: no human label" if teacher_f1 is None else f"{teacher_f1:.4f}",
        args.out,
    )
