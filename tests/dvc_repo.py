"""A scratch clone of the working tree to run `dvc repro` in, with helpers to read what DVC did."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from scripts.worktree import copy_worktree

ALL_STAGES = {
    "fetch",
    "llm_label",
    "cluster_sample",
    "split",
    "scout",
    "argilla_sync",
    "argilla_review",
    "finetune_gliner",
    "finetune_spanmarker",
    "evaluate",
    "tag",
}
ALWAYS = {"argilla_sync"}  # checks the review server on every repro (cheap; its output hash rarely changes)
LABELLED = 120


def sh(repo: Path, *command: str) -> str:
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", HF_HUB_OFFLINE="1")
    run = subprocess.run(command, cwd=repo, env=env, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, f"{' '.join(command)} failed:\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
    return run.stdout + run.stderr


def stages_run(output: str) -> set[str]:
    return set(re.findall(r"Running stage '(\w+)'", output))


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
    params["scout"].update(epochs=1, folds=2)
    (scratch / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    sh(scratch, "git", "init", "-q")
    commit(scratch, "scratch")
    return scratch


def commit(repo: Path, message: str) -> None:
    sh(repo, "git", "add", "-A")
    sh(repo, "git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", message)


def edit_params(repo: Path, change) -> None:
    params = yaml.safe_load((repo / "params.yaml").read_text())
    change(params)
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
