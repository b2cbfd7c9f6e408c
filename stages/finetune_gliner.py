"""finetune_gliner: fine-tune the GLiNER student (stages/students/gliner.py) on the reviewed train split.

Keeps the epoch with the best validation F1 (on human-labelled records when there are any) and writes it with
its card, its int8 ONNX export, metrics and per-epoch plot data; the shared main is stages/students/finetune.py.
"""

from __future__ import annotations

from stages.students import gliner as gliner_student
from stages.students.config import FinetuneGlinerParams
from stages.students.finetune import finetune_main

if __name__ == "__main__":
    finetune_main(FinetuneGlinerParams, "GLiNER company-name student", gliner_student)
