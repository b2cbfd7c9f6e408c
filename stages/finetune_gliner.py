"""finetune_gliner: fine-tune the GLiNER student (stages/students/gliner.py) on the reviewed train split.

Keeps the epoch with the best validation F1 (on human-labelled records when there are any) and writes it with
its predict settings and training summary, metrics and per-epoch plot data; the shared main is
stages/students/finetune.py.
"""

from __future__ import annotations

from stages.core.cli import run_stage
from stages.students import gliner
from stages.students.config import FinetuneGlinerParams
from stages.students.finetune import finetune_main


def main(argv: list[str] | None = None) -> None:
    finetune_main(FinetuneGlinerParams, "GLiNER company-name student", gliner, argv)


if __name__ == "__main__":
    run_stage(main)
