"""finetune_spanmarker: fine-tune the SpanMarker student (stages/students/spanmarker.py), as finetune_gliner
does GLiNER: same records, same best-epoch rule, same outputs (stages/students/finetune.py)."""

from __future__ import annotations

from stages.core.cli import run_stage
from stages.students import spanmarker
from stages.students.config import FinetuneSpanMarkerParams
from stages.students.finetune import finetune_main


def main(argv: list[str] | None = None) -> None:
    finetune_main(FinetuneSpanMarkerParams, "SpanMarker company-name student", spanmarker, argv)


if __name__ == "__main__":
    run_stage(main)
