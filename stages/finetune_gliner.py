"""finetune_gliner: fine-tune the GLiNER student (stages/common/gliner_student.py) on the reviewed train split.

Keeps the epoch with the best validation F1 (on human-labelled records when there are any) and writes it with
its card, its int8 ONNX export, metrics and per-epoch plot data; the shared main is stages/common/finetune.py.
"""
from __future__ import annotations

from stages.common import gliner_student
from stages.common.finetune import finetune_main
from stages.common.student_params import FinetuneGlinerParams

if __name__ == "__main__":
    finetune_main(FinetuneGlinerParams, "GLiNER company-name student", gliner_student)
