"""What a servable student folder holds beside the model, by name: the files the packaging adds (package.py) and
the card (the export stage), what the model is (`model_version`: the hash tag caches under and the server
reports), and the export's manifest of its files, checked when a folder is served (`verify_folder`). Kept apart from
the packaging code so readers of a folder (tag) depend on the names, not on the handler.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import orjson

from stages.core.errors import ModelError
from stages.core.legacy import predates_manifest
from stages.students.registry import require_files, student_name
from stages.students.runtime import EXPORT_FORMAT
from stages.students.settings import read_settings

CODE_DIR = "code"  # inside an exported student: this repository's modules the handler imports
HANDLER_FILE, REQUIREMENTS_FILE, CARD_FILE = "handler.py", "requirements.txt", "README.md"
# What a server (scripts/serve.py) says it serves, on every reply; tag checks both against the folder it caches under.
VERSION_HEADER, STUDENT_HEADER = "X-Model-Version", "X-Student"
MANIFEST_FILE = "manifest.json"  # inside an exported student: size and sha256 of each file the export wrote
MASTER_DIR = "master"  # inside an exported student: the security master its handler links spans against
# None of these changes a span, so none of them is in model_files (a new master keeps tag's cached spans valid).
PACKAGING = frozenset({CODE_DIR, HANDLER_FILE, REQUIREMENTS_FILE, CARD_FILE, MANIFEST_FILE, MASTER_DIR})
# Not in the manifest: the card is written after it (the export stage adds its scores), the manifest is itself.
UNLISTED = frozenset({CARD_FILE, MANIFEST_FILE})


def folder_files(folder: Path) -> list[Path]:
    """Every file of a student folder, sorted; not Python's bytecode caches, which importing a folder's handler.py
    or code/ writes beside them (as Inference Endpoints does)."""
    return sorted(
        path
        for path in folder.rglob("*")
        if path.is_file() and "__pycache__" not in path.relative_to(folder).parts[:-1]
    )


def model_files(folder: Path) -> list[Path]:
    """The files of a saved or servable student folder that make its predictions (weights, graph, config,
    tokenizer, predict settings), sorted: not the card, the handler or its code, so rewriting those (a card
    edit, a handler fix) leaves what the model is, and every answer cached under its hash, as it was."""
    return [path for path in folder_files(folder) if path.relative_to(folder).parts[0] not in PACKAGING]


def listed_files(folder: Path) -> list[Path]:
    """The files an export's manifest lists: the model's and the code that serves it (handler.py, code/,
    requirements.txt: they make the endpoint's predictions too), not UNLISTED."""
    return [path for path in folder_files(folder) if path.relative_to(folder).as_posix() not in UNLISTED]


def file_entry(path: Path) -> dict:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return {"bytes": path.stat().st_size, "sha256": digest.hexdigest()}


def write_manifest(folder: Path) -> None:
    """MANIFEST_FILE: each listed file's size and sha256 by relative path, sorted, so the same export gives the
    same bytes."""
    files = {path.relative_to(folder).as_posix(): file_entry(path) for path in listed_files(folder)}
    (folder / MANIFEST_FILE).write_text(json.dumps({"files": files}, indent=2, sort_keys=True) + "\n")


def read_manifest(folder: Path) -> dict[str, dict]:
    path = folder / MANIFEST_FILE
    try:
        files = json.loads(path.read_bytes())["files"]
        if isinstance(files, dict) and all(
            isinstance(entry, dict) and {"bytes", "sha256"} <= set(entry) for entry in files.values()
        ):
            return files
    except (ValueError, KeyError, TypeError):
        pass
    raise ModelError(f"{path}: not a manifest as the export writes it; re-export: dvc repro export")


def verify_folder(folder: Path) -> None:
    """Refuses (ModelError, one line naming the file) a folder to serve that is not what its export wrote: a
    listed file missing, of another size or hash, or an unlisted one added; then settings a load would refuse,
    and a file its student's load needs that is missing. An export without a manifest is refused too (re-export
    it), except one written before students had registry names (core/legacy.py); a saved (training) folder has
    none: DVC tracks it, and it is checked for its settings and files only. Hashing is about 0.3 s per 100 MB."""
    if (folder / MANIFEST_FILE).exists():
        check_manifest(folder, read_manifest(folder))
    settings = read_settings(folder)
    exported = settings.get("format") == EXPORT_FORMAT
    if exported and not (folder / MANIFEST_FILE).exists() and not predates_manifest(settings):
        raise ModelError(
            f"{folder / MANIFEST_FILE}: missing, so the export cannot be checked (exported before manifests, or the "
            "file was removed); re-export it: dvc repro export"
        )
    if settings.get("student") or settings.get("student_module"):
        require_files(folder, student_name(settings, folder), exported)


def check_manifest(folder: Path, listed: dict[str, dict]) -> None:
    for name, entry in sorted(listed.items()):
        path = folder / name
        if not path.is_file():
            raise ModelError(f"{path}: missing (listed in {MANIFEST_FILE}); re-export: dvc repro export")
        if path.stat().st_size != entry["bytes"]:
            raise ModelError(
                f"{path}: {path.stat().st_size} bytes, {entry['bytes']} when exported ({MANIFEST_FILE}): changed "
                "or truncated since; re-export: dvc repro export"
            )
    for name, entry in sorted(listed.items()):
        if file_entry(folder / name)["sha256"] != entry["sha256"]:
            raise ModelError(
                f"{folder / name}: sha256 differs from {MANIFEST_FILE}: changed since export; re-export: dvc repro "
                "export"
            )
    added = sorted({path.relative_to(folder).as_posix() for path in listed_files(folder)} - set(listed))
    if added:
        raise ModelError(f"{folder / added[0]}: not in {MANIFEST_FILE} (added after export); remove it or re-export")


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
