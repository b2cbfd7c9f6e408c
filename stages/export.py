"""export: the servable folder of one fine-tuned student (dvc.yaml runs it once per student, with `foreach`).

models/<student> in; models/<student>_export out: the int8 ONNX form (students/runtime.py, the student's own
export), its predict settings (with the student's decode settings from params `predict`, e.g. GLiNER's threshold),
the Inference Endpoints handler with the code it runs and pinned requirements (serving/package.py), the security
master of params `link` (files and accepted aliases joined) with the linker's settings, so the handler gives each
entity its symbol, and the model card (students/card.py) with the export's validation scores and the master it
links against. Its own stage, so editing the handler, the packaging,
the card or a decode setting rebuilds this folder and retrains nothing.
"""

from __future__ import annotations

import time
from pathlib import Path

from stages.core.cli import run_stage, setup_logging, stage_parser
from stages.core.io import log, read_table
from stages.core.metrics import entity_scores
from stages.core.params import load_params
from stages.core.stage_params import FetchParams
from stages.labels.records import LABEL_COLUMNS, human_or_all, labelled_records
from stages.securities.master import describe, load_master
from stages.securities.settings import LinkParams
from stages.serving.layout import CARD_FILE
from stages.serving.package import servable_folder
from stages.students.card import CardData, render
from stages.students.config import PredictParams
from stages.students.registry import STUDENTS, student
from stages.students.runtime import EXPORT_FORMAT
from stages.students.settings import read_summary


def main(argv: list[str] | None = None) -> None:
    parser = stage_parser(__doc__.splitlines()[0], ("model", "valid", "out"))
    parser.add_argument("--student", required=True, choices=sorted(STUDENTS))
    args = parser.parse_args(argv)
    setup_logging()
    fetch = load_params(FetchParams)  # dvc.yaml declares the keys read: fetch.kind, fetch.hf_dataset.path
    datasets = [fetch.hf_dataset.path] if fetch.kind == "hf_dataset" else []
    chosen = student(args.student)
    decode = load_params(PredictParams).decode(chosen.NAME)  # dvc.yaml declares the keys read: predict.<student>
    link = load_params(LinkParams)  # dvc.yaml declares the keys read: link.master_files, accepted_aliases, linker
    accepted = Path(link.accepted_aliases) if link.accepted_aliases else None
    master = load_master([Path(p) for p in link.master_files], accepted)
    summary = read_summary(args.model)
    valid = human_or_all(labelled_records(read_table(args.valid, LABEL_COLUMNS)))
    started = time.perf_counter()
    servable_folder(chosen, args.model, args.out, decode, (master, link.linker))
    scores = entity_scores([r["spans"] for r in valid], chosen.load(args.out)([r["text"] for r in valid]))
    securities = describe(master, link.master_files) | {"accepted_aliases": link.accepted_aliases}
    (args.out / CARD_FILE).write_text(render(CardData(summary, scores, datasets, securities)))
    log.info(
        "export %s: %s -> %s (%s) in %.1f s; valid F1 %.4f (saved model %.4f)",
        chosen.NAME,
        args.model,
        args.out,
        EXPORT_FORMAT,
        time.perf_counter() - started,
        scores["f1"],
        summary.best["valid_f1"],
    )


if __name__ == "__main__":
    run_stage(main)
