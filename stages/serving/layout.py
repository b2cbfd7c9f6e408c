"""What a servable student folder holds beside the model, by name: the files the packaging adds (package.py) and
the card (the export stage), and what the model is (`model_version`: the hash tag caches under and the server
reports). Kept apart from the packaging code so readers of a folder (tag) depend on the names, not on the handler.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import orjson

from stages.core.errors import ModelError
from stages.students.settings import read_settings

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


def model_version(directory: Path, decode: dict | None = None) -> str:
    """A hash of the model folder's files that make its predictions (names and bytes; serving.package.model_files):
    the card or the handler's code can change without re-tagging the feed. Decode settings that override the
    folder's own (a GLiNER threshold other than the one its settings hold) are hashed in too; those equal to the
    folder's change nothing, so the version of a folder exported with them stays the same."""
    if not directory.is_dir():
        raise ModelError(f"{directory}: not found (train the student first: dvc repro)")
    digest = hashlib.sha256()
    for path in model_files(directory):
        digest.update(path.relative_to(directory).as_posix().encode() + b"\0")
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
        digest.update(b"\0")
    own = read_settings(directory) if decode else {}
    overrides = {key: value for key, value in (decode or {}).items() if own.get(key) != value}
    if overrides:
        digest.update(b"decode\0" + orjson.dumps(overrides, option=orjson.OPT_SORT_KEYS))
    return digest.hexdigest()[:16]
