"""The one main() of both finetune stages: reviewed splits in; the best-epoch model (with its predict settings and
a training summary beside it), metrics and per-epoch history out. The servable folder and its model card are the
export stage's (stages/export.py), so editing them retrains nothing."""

from __future__ import annotations

from stages.core.cli import stage_args
from stages.core.errors import InputError
from stages.core.io import log, read_table, write_csv, write_json
from stages.core.params import load_params
from stages.core.schema import Record
from stages.labels.records import LABEL_COLUMNS, human_or_all, human_records, labelled_records, unreviewed_rule
from stages.students.config import ChoosesRecipe
from stages.students.interface import Student
from stages.students.settings import TrainingSummary, write_summary
from stages.students.training import HISTORY_FIELDS


def run_params(section) -> dict:
    """The run's params as the card shows them: every key of the finetune section but `recipes`, with the chosen
    recipe's keys."""
    return section.model_dump(exclude={"recipes"}) | section.recipes[section.recipe].model_dump()


def label_examples(records: list[Record], count: int = 3) -> list[dict]:
    """The first few training records that name a company (records come sorted by id: a fixed choice)."""
    return [{"text": r["text"], "spans": r["spans"]} for r in records if r["spans"]][:count]


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
    records = {
        "train": unreviewed_rule(labelled_records(read_table(args.train, LABEL_COLUMNS)), training.unreviewed),
        "valid": human_or_all(labelled_records(read_table(args.valid, LABEL_COLUMNS))),
    }
    if not records["train"] or not records["valid"]:
        raise InputError(
            f"{section_name}: need labelled train and valid records, have {len(records['train'])} and "
            f"{len(records['valid'])}"
        )
    sizes = {name: len(rs) for name, rs in records.items()}
    sizes |= {f"{name}_human": len(human_records(rs)) for name, rs in records.items()}
    log.info(
        "%s: %d train records (%d human-labelled), %d valid records (%d human-labelled), base %s",
        section_name,
        sizes["train"],
        sizes["train_human"],
        sizes["valid"],
        sizes["valid_human"],
        training.base_model,
    )
    result = student.train(training, records["train"], records["valid"], args.out)
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
        },
    )
    log.info("%s: best epoch %d, valid F1 %.4f -> %s", section_name, result.best_epoch, result.best_valid_f1, args.out)
