"""finetune_spanmarker: fine-tune the SpanMarker student (stages/common/spanmarker_student.py), as finetune_gliner
does GLiNER: same records, same best-epoch rule, same outputs (stages/common/finetune.py)."""
from __future__ import annotations

from stages.common import spanmarker_student
from stages.common.finetune import finetune_main
from stages.common.student_params import FinetuneSpanMarkerParams

if __name__ == "__main__":
    finetune_main(FinetuneSpanMarkerParams, "SpanMarker company-name student", spanmarker_student)
