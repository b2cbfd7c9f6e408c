"""The one main() of both finetune stages: reviewed splits in; the best-epoch model with its model card, metrics,
per-epoch history and int8 ONNX export (with its own card: the folder to upload) out. Only these stages import the
card, so editing it reruns only them."""

from __future__ import annotations

import time
from types import ModuleType

from stages.core.io import log, read_table, stage_args, write_csv, write_json
from stages.core.metrics import entity_scores
from stages.core.params import load_params
from stages.core.stage_params import FetchParams
from stages.labels.records import LABEL_COLUMNS, human_or_all, human_records, labelled_records, unreviewed_rule
from stages.students.card import CardData, label_examples, render
from stages.students.config import ChoosesRecipe
from stages.students.runtime import EXPORT_FORMAT
from stages.students.training import HISTORY_FIELDS


def card_params(section) -> dict:
    """What the card shows as the run's params: every key of the finetune section but `recipes`, with the chosen
    recipe's keys."""
    return section.model_dump(exclude={"recipes"}) | section.recipes[section.recipe].model_dump()


def finetune_main(
    params_model: type[ChoosesRecipe], title: str, student: ModuleType, argv: list[str] | None = None
) -> None:
    """`student` is the stages.common module of the student (gliner_student, ...): see students.py."""
    section_name = params_model.SECTION
    args = stage_args(
        f"{section_name}: fine-tune on the reviewed train split",
        ("train", "valid", "out", "export", "metrics", "history"),
        argv,
    )
    section = load_params(params_model)
    fetch = load_params(FetchParams)  # dvc.yaml declares the keys read: fetch.kind, fetch.hf_dataset.path
    datasets = [fetch.hf_dataset.path] if fetch.kind == "hf_dataset" else []
    training = section.training()
    records = {
        "train": unreviewed_rule(labelled_records(read_table(args.train, LABEL_COLUMNS)), training.unreviewed),
        "valid": human_or_all(labelled_records(read_table(args.valid, LABEL_COLUMNS))),
    }
    if not records["train"] or not records["valid"]:
        raise SystemExit(
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
    best_row = next(h for h in result["history"] if h["epoch"] == result["best_epoch"])
    card = CardData(
        title=title,
        module=student.__name__.rsplit(".", 1)[-1],
        directory=str(args.out),
        base_model=training.base_model,
        revision=training.revision,
        entity_label=training.entity_label,
        epochs=training.epochs,
        sizes=sizes,
        best=best_row,
        params=card_params(section),
        examples=label_examples(records["train"]),
        datasets=datasets,
    )
    (args.out / "README.md").write_text(render(card))
    write_csv(args.history, result["history"], HISTORY_FIELDS)
    write_json(
        args.metrics,
        {
            "train_records": sizes["train"],
            "valid_records": sizes["valid"],
            "train_human_labelled": sizes["train_human"],
            "valid_human_labelled": sizes["valid_human"],
            "best_epoch": result["best_epoch"],
            "best_valid_f1": result["best_valid_f1"],
        },
    )
    log.info(
        "%s: best epoch %d, valid F1 %.4f -> %s", section_name, result["best_epoch"], result["best_valid_f1"], args.out
    )
    started = time.perf_counter()
    student.export(args.out, args.export)
    log.info(
        "%s: exported %s -> %s (%s) in %.1f s",
        section_name,
        args.out,
        args.export,
        EXPORT_FORMAT,
        time.perf_counter() - started,
    )
    exported = student.load(args.export)([r["text"] for r in records["valid"]])
    card.export_scores = entity_scores([r["spans"] for r in records["valid"]], exported)
    (args.export / "README.md").write_text(render(card, exported=True))
    log.info(
        "%s: export valid F1 %.4f (saved model %.4f); cards in %s and %s",
        section_name,
        card.export_scores["f1"],
        result["best_valid_f1"],
        args.out,
        args.export,
    )
