"""finetune_gliner: fine-tune a GLiNER student on the reviewed train split, keep the best valid-F1 epoch.

Validation picks the epoch on human-labelled records when there are any. Writes the model directory, its int8 ONNX export for CPU serving (--export),
its metrics and per-epoch plot data (paths from dvc.yaml); the student itself lives in
stages/common/gliner_student.py.
"""
from __future__ import annotations

from stages.common import gliner_student
from stages.common.training import finetune_main


def main(argv: list[str] | None = None) -> None:
    finetune_main("finetune_gliner", "GLiNER company-name student", gliner_student, argv)


if __name__ == "__main__":
    main()
