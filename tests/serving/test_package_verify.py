"""An export carries a manifest of its files (size, sha256) and is checked against it when it is served: a changed,
truncated, missing or added file, or an export without a manifest, is refused with one line naming the file. On
real tiny students (tests/conftest.py trained_student)."""

import json
import shutil
from pathlib import Path

import pytest

from stages.core.errors import ModelError
from stages.serving.handler import EndpointHandler
from stages.serving.layout import CARD_FILE, MANIFEST_FILE, model_files, model_version
from stages.serving.package import servable_folder
from stages.students import registry
from stages.students.registry import STUDENTS
from stages.students.runtime import EXPORT_FILE
from stages.students.settings import SETTINGS_FILE
from tests.helpers import PROBE


def copy_export(trained_student, tmp_path: Path) -> Path:
    name, _, _, models = trained_student
    return Path(shutil.copytree(models / f"{name}_export", tmp_path / f"{name}_export"))


def edit_settings(folder: Path, **changes) -> None:
    settings = json.loads((folder / SETTINGS_FILE).read_text()) | changes
    (folder / SETTINGS_FILE).write_text(json.dumps({k: v for k, v in settings.items() if v is not None}))


@pytest.mark.slow
def test_an_export_lists_what_it_wrote_deterministically_and_keeps_its_version(trained_student, tmp_path):
    name, _, _, models = trained_student
    export = models / f"{name}_export"
    listed = json.loads((export / MANIFEST_FILE).read_text())["files"]
    files = {p.relative_to(export).as_posix() for p in export.rglob("*") if p.is_file()}
    assert set(listed) == files - {MANIFEST_FILE, CARD_FILE}  # the card is the export stage's, written after
    assert {EXPORT_FILE, SETTINGS_FILE, "handler.py", "requirements.txt", "code/stages/serving/handler.py"} <= set(
        listed
    )
    assert all(p.relative_to(export).as_posix() in listed for p in model_files(export))
    assert listed[EXPORT_FILE]["bytes"] == (export / EXPORT_FILE).stat().st_size
    # the manifest is no model file: the version caches are keyed by is the one the folder had without it
    bare = Path(shutil.copytree(export, tmp_path / "bare"))
    (bare / MANIFEST_FILE).unlink()
    assert model_version(export) == model_version(bare)
    servable_folder(STUDENTS[name], models / name, tmp_path / "again")
    assert (tmp_path / "again" / MANIFEST_FILE).read_bytes() == (export / MANIFEST_FILE).read_bytes()


def overwrite_20kb(folder: Path) -> str:
    with open(folder / EXPORT_FILE, "r+b") as f:
        f.seek((folder / EXPORT_FILE).stat().st_size // 2)
        f.write(bytes(20_000))
    return f"{EXPORT_FILE}: sha256 differs from {MANIFEST_FILE}"


def truncate(folder: Path) -> str:
    (folder / EXPORT_FILE).write_bytes((folder / EXPORT_FILE).read_bytes()[:-1000])
    return f"{EXPORT_FILE}: {(folder / EXPORT_FILE).stat().st_size} bytes, "


def drop_tokenizer(folder: Path) -> str:
    (folder / "tokenizer.json").unlink()
    return f"tokenizer.json: missing (listed in {MANIFEST_FILE})"


def relabel(folder: Path) -> str:
    text = (folder / SETTINGS_FILE).read_text()
    (folder / SETTINGS_FILE).write_text(text.replace('"company"', '"companx"'))  # valid, not what was exported
    return f"{SETTINGS_FILE}: sha256 differs"


def add_file(folder: Path) -> str:
    (folder / "code" / "json.py").write_text("raise SystemExit\n")  # would shadow json for the endpoint's handler
    return f"code/json.py: not in {MANIFEST_FILE}"


@pytest.mark.slow
@pytest.mark.parametrize("tamper", [overwrite_20kb, truncate, drop_tokenizer, relabel, add_file])
def test_an_export_changed_since_it_was_written_is_refused_naming_the_file(trained_student, tmp_path, tamper):
    folder = copy_export(trained_student, tmp_path)
    expected = tamper(folder)
    with pytest.raises(ModelError, match="re-export|remove it") as error:
        EndpointHandler(folder)
    assert f"{folder}/{expected}" in str(error.value) and "\n" not in str(error.value)


@pytest.mark.slow
def test_an_export_without_manifest_is_refused_a_saved_folder_and_a_legacy_export_are_served(trained_student, tmp_path):
    """A later export without its manifest cannot be checked: refused (re-exporting is one command and retrains
    nothing). A saved training folder has none (DVC tracks it), nor has an export written before students had
    registry names (core/legacy.py): both still serve."""
    name, _, _, models = trained_student
    folder = copy_export(trained_student, tmp_path)
    (folder / MANIFEST_FILE).unlink()
    with pytest.raises(ModelError, match=f"{MANIFEST_FILE}: missing.*re-export it: dvc repro export"):
        EndpointHandler(folder)
    assert EndpointHandler(models / name).student == name
    edit_settings(folder, student=None, student_module=f"stages.common.{name}_student")
    assert EndpointHandler(folder)({"inputs": PROBE}) is not None


@pytest.mark.slow
def test_a_folder_missing_a_file_its_student_needs_names_it_before_the_library_fails(trained_student, tmp_path):
    """GLiNER without tokenizer.json and vocab.txt failed with "stat: path should be string ... NoneType"."""
    name, _, _, models = trained_student
    saved = Path(shutil.copytree(models / name, tmp_path / name))
    for file in ("tokenizer.json", "vocab.txt"):
        (saved / file).unlink()
    message = f"{saved}: tokenizer.json or vocab.txt missing, which the {name} student needs; retrain it"
    with pytest.raises(ModelError, match=message):
        registry.load(saved)
    with pytest.raises(ModelError, match=message):
        EndpointHandler(saved)
    legacy = copy_export(trained_student, tmp_path)  # no manifest to name it: the student's needs do
    (legacy / MANIFEST_FILE).unlink()
    (legacy / EXPORT_FILE).unlink()
    edit_settings(legacy, student=None, student_module=f"stages.common.{name}_student")
    with pytest.raises(ModelError, match=f"{legacy}: {EXPORT_FILE} missing, which the {name} student needs"):
        EndpointHandler(legacy)


@pytest.mark.slow
def test_an_out_of_range_threshold_is_refused_where_the_student_loads(trained_student, tmp_path):
    """A threshold of 2.0 kept every entity out, silently; "high" failed only at the first request."""
    name, _, _, models = trained_student
    saved = Path(shutil.copytree(models / name, tmp_path / name))
    for threshold, problem in ((2.0, "input should be less than 1, got 2.0"), ("high", "valid number, got 'high'")):
        edit_settings(saved, threshold=threshold)
        key = "threshold" if name == "gliner" else "threshold: unknown key"  # SpanMarker decodes without one
        with pytest.raises(ModelError, match=f"{saved / SETTINGS_FILE}: {key}"):
            STUDENTS[name].load(saved)
        if name == "gliner":
            with pytest.raises(ModelError, match=problem):
                STUDENTS[name].load(saved)
