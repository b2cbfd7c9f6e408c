"""finetune_spanmarker: fine-tune the SpanMarker student (stages/students/spanmarker.py), as finetune_gliner
does GLiNER: same records, same best-epoch rule, same outputs (stages/students/finetune.py)."""

from __future__ import annotations

from stages.students import spanmarker as spanmarker_student
from stages.students.config import FinetuneSpanMarkerParams
from stages.students.finetune import finetune_main

if __name__ == "__main__":
    finetune_main(FinetuneSpanMarkerParams, "SpanMarker company-name student", spanmarker_student)
