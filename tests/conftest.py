"""Fixtures every test directory can use; the helpers they share are plain functions in tests/helpers.py."""

import json
import os
from pathlib import Path

import pytest
import yaml

from scripts.worktree import copy_worktree
from tests.helpers import LABELLED, ROOT, STUDENT_NAMES, TINY_RECIPES, FakeTeacher, commit, sh

__all__ = ["ROOT"]  # tests/test_dag.py reads the repo root from here

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture
def fake_teacher():
    server = FakeTeacher().start()
    yield server
    server.stop()


@pytest.fixture
def repo(tmp_path, fake_teacher) -> Path:
    """A scratch clone of the working tree whose params point llm_label at the test's teacher server."""
    scratch = copy_worktree(tmp_path / "repo")
    params = yaml.safe_load((scratch / "params.yaml").read_text())
    params["llm_label"].update(limit=LABELLED, concurrency={"min": 1, "start": 4, "max": 16})
    params["llm_label"]["endpoint"].update(base_url=fake_teacher.url, response_format="none")
    params["cluster_sample"].update(cluster_fraction=1.0, no_company_fraction=1.0)
    for section in ("finetune_gliner", "finetune_spanmarker"):
        params[section]["recipes"][params[section]["recipe"]].update(epochs=1)
        params[section]["min_valid_f1"] = 0.0  # one epoch is for the DAG's flows, not quality (SpanMarker's is 0)
    params["scout"].update(epochs=1, folds=2)
    (scratch / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    sh(scratch, "git", "init", "-q")
    commit(scratch, "scratch")
    return scratch


@pytest.fixture(scope="module")
def labelled_headlines() -> list[dict]:
    """The 30 hand-labelled fixture headlines as training records, oldest first."""
    rows = [json.loads(line) for line in (ROOT / "tests/data/headlines.jsonl").read_text().splitlines()]
    return [
        {"id": f"h{i:02d}", "text": r["text"], "spans": r["spans"], "label_source": "human"}
        for i, r in enumerate(sorted(rows, key=lambda r: r["date"]))
    ]


@pytest.fixture(scope="module", params=STUDENT_NAMES)
def trained_student(request, labelled_headlines, tmp_path_factory):
    """(name, tiny recipe, train() result, models dir holding <name> and <name>_export): trained on the 20 oldest
    headlines, the epoch picked on the 10 newest."""
    from stages.serving.package import servable_folder  # here: they import transformers (~3 s)
    from stages.students.registry import STUDENTS, training_params

    name = request.param
    training = training_params(name, ROOT / "params.yaml").model_copy(update=TINY_RECIPES[name])
    models = tmp_path_factory.mktemp("models")
    result = STUDENTS[name].train(training, labelled_headlines[:20], labelled_headlines[20:], models / name)
    servable_folder(STUDENTS[name], models / name, models / f"{name}_export")
    return name, training, result, models


@pytest.fixture(scope="module")
def tiny_gliner(labelled_headlines, tmp_path_factory):
    """A models dir holding gliner and gliner_export of a tiny real training run (as trained_student trains it)."""
    from stages.serving.package import servable_folder  # here: they import transformers (~3 s)
    from stages.students.registry import STUDENTS, training_params

    training = training_params("gliner", ROOT / "params.yaml").model_copy(update=TINY_RECIPES["gliner"])
    models = tmp_path_factory.mktemp("models")
    STUDENTS["gliner"].train(training, labelled_headlines[:20], labelled_headlines[20:], models / "gliner")
    servable_folder(STUDENTS["gliner"], models / "gliner", models / "gliner_export")
    return models
