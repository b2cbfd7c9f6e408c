"""What a servable student folder holds beside the model, by name: the files the packaging adds (package.py) and
the card (the export stage). Kept apart from the packaging code so readers of a folder (tag) depend on the names,
not on the handler.
"""

from __future__ import annotations

from pathlib import Path

CODE_DIR = "code"  # inside an exported student: this repository's modules the handler imports
HANDLER_FILE, REQUIREMENTS_FILE, CARD_FILE = "handler.py", "requirements.txt", "README.md"
# None of these changes a prediction, so none of them is in model_files.
PACKAGING = frozenset({CODE_DIR, HANDLER_FILE, REQUIREMENTS_FILE, CARD_FILE})


def model_files(folder: Path) -> list[Path]:
    """The files of a saved or servable student folder that make its predictions (weights, graph, config,
    tokenizer, predict settings), sorted: not the card, the handler or its code, so rewriting those (a card
    edit, a handler fix) leaves what the model is, and every answer cached under its hash, as it was."""
    return sorted(
        path for path in folder.rglob("*") if path.is_file() and path.relative_to(folder).parts[0] not in PACKAGING
    )
