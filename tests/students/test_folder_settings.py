"""A folder's predict settings (headline_ner.json) are checked when read, by the models that check params
`predict`, and a folder's student is found by registry name only; a file a student's load needs is named when it is
missing. No model is trained here: the folders hold settings and at most empty stand-in files."""

import json
import sys
from pathlib import Path

import pytest

from stages.core.errors import ModelError
from stages.students import registry
from stages.students.settings import SETTINGS_FILE, read_settings

GLINER_EXPORT = {"student": "gliner", "entity_label": "company", "threshold": 0.5, "format": "onnx-int8"}


def folder_with(tmp_path: Path, settings) -> Path:
    text = settings if isinstance(settings, str) else json.dumps(settings)
    (tmp_path / SETTINGS_FILE).write_text(text)
    return tmp_path


@pytest.mark.parametrize(
    "settings",
    [
        GLINER_EXPORT,
        {"student": "gliner", "entity_label": "company", "threshold": 0.5},  # saved by finetune
        {"student": "spanmarker", "entity_label": "company"},
        {"student": "spanmarker", "entity_label": "company", "format": "onnx-int8"},
        {"student_module": "stages.common.gliner_student", "entity_label": "company", "threshold": 0.5},  # legacy
        {"entity_label": "company", "threshold": 0.5},  # saved by hand: the caller names the student
    ],
)
def test_the_settings_the_pipeline_writes_are_read_as_they_are(tmp_path, settings):
    assert read_settings(folder_with(tmp_path, settings)) == settings


@pytest.mark.parametrize(
    "settings, problem",
    [
        (GLINER_EXPORT | {"threshold": 2.0}, "threshold: input should be less than 1, got 2.0"),
        (GLINER_EXPORT | {"threshold": "high"}, "threshold: input should be a valid number, got 'high'"),
        (GLINER_EXPORT | {"threshold": True}, "threshold: input should be a valid number, got True"),
        (GLINER_EXPORT | {"threshold": 0}, "threshold: input should be greater than 0, got 0"),
        ({k: v for k, v in GLINER_EXPORT.items() if k != "threshold"}, "threshold: missing"),
        (GLINER_EXPORT | {"treshold": 0.4}, "treshold: unknown key"),
        ({"student": "spanmarker", "entity_label": "company", "threshold": 0.5}, "threshold: unknown key"),
        (GLINER_EXPORT | {"entity_label": ""}, "entity_label: string should have at least 1 character, got ''"),
        (GLINER_EXPORT | {"entity_label": 7}, "entity_label: input should be a valid string, got 7"),
        (GLINER_EXPORT | {"format": "onnx"}, "format: input should be 'onnx-int8', got 'onnx'"),
        (GLINER_EXPORT | {"student": "bert"}, "student: input should be 'gliner' or 'spanmarker', got 'bert'"),
        ({"entity_label": "company", "threshold": 1.5}, "threshold: input should be less than 1, got 1.5"),
        ({"entity_label": "company", "top_k": 3}, "top_k: unknown key"),
        ("[1, 2]", "must be a JSON object of predict settings; got list"),
        ('{"student": "gliner",', "not JSON"),
    ],
)
def test_settings_a_load_would_misread_are_refused_naming_the_file_and_key(tmp_path, settings, problem):
    folder = folder_with(tmp_path, settings)
    with pytest.raises(ModelError) as error:
        read_settings(folder)
    assert str(error.value).startswith(f"{folder / SETTINGS_FILE}: {problem}") and "\n" not in str(error.value)


def test_a_student_module_in_the_settings_is_only_looked_up_never_imported(tmp_path):
    """Legacy folders name their student's module; only the two modules that existed are known."""
    folder = folder_with(tmp_path, {"student_module": "antigravity", "entity_label": "company"})
    with pytest.raises(ModelError, match=f"{folder / SETTINGS_FILE}: names no student"):
        registry.load(folder)
    assert "antigravity" not in sys.modules


@pytest.mark.parametrize(
    "settings, present, missing",
    [
        (GLINER_EXPORT, ["gliner_config.json", "tokenizer_config.json", "model.onnx"], "tokenizer.json or vocab.txt"),
        (GLINER_EXPORT, ["gliner_config.json", "tokenizer_config.json", "vocab.txt"], "model.onnx"),
        ({"student": "spanmarker", "entity_label": "company"}, ["tokenizer_config.json"], "config.json"),
        (
            {"student": "gliner", "entity_label": "company", "threshold": 0.5},
            ["gliner_config.json", "tokenizer_config.json", "tokenizer.json"],
            "model.safetensors or pytorch_model.bin",
        ),
    ],
)
def test_a_missing_file_a_student_loads_is_named_before_the_library_reads_the_folder(
    tmp_path, settings, present, missing
):
    folder = folder_with(tmp_path, settings)
    for name in present:
        (folder / name).write_text("{}")
    with pytest.raises(ModelError, match=f"^{folder}: {missing} missing, which the {settings['student']} student"):
        registry.load(folder)
