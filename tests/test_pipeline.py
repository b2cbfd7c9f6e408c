"""The DVC flows users rely on, on a scratch copy of the repo with a real local teacher server."""
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT
from tests.fake_teacher import INDICES_MARKER

ALL_STAGES = {"fetch", "llm_label", "cluster_sample", "split", "argilla_review", "finetune_gliner",
              "finetune_spanmarker", "evaluate"}
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
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                           capture_output=True, text=True, check=True).stdout.split()
    scratch = tmp_path / "repo"
    for name in files:
        if (ROOT / name).is_file():
            (scratch / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, scratch / name)
    params = yaml.safe_load((scratch / "params.yaml").read_text())
    params["llm_label"].update(limit=LABELLED, concurrency=8)
    params["llm_label"]["endpoint"].update(base_url=fake_teacher.url, response_format="none")
    params["cluster_sample"].update(cluster_fraction=1.0, no_company_fraction=1.0)
    for section in ("finetune_gliner", "finetune_spanmarker"):
        params[section]["recipes"][params[section]["recipe"]].update(epochs=1)
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


@pytest.mark.slow
def test_the_dvc_user_flows(repo, fake_teacher, tmp_path):
    # 1. the whole DAG runs, prints the three F1s, and a second repro runs nothing
    assert stages_run(sh(repo, "dvc", "repro")) == ALL_STAGES
    assert sum(fake_teacher.requests.values()) == LABELLED
    metrics = json.loads(sh(repo, "dvc", "metrics", "show", "--json"))
    scores = next(iter(metrics.values()))["data"]["metrics/metrics.json"]["data"]
    assert {"gliner", "spanmarker", "teacher"} <= set(scores) and scores["test_records"] > 0
    for model in ("gliner", "spanmarker", "teacher"):
        assert 0.0 <= scores[model]["f1_ci_low"] <= scores[model]["f1"] <= scores[model]["f1_ci_high"] <= 1.0
    assert "bare encoder" in scores["gliner_zero_shot"]
    assert stages_run(sh(repo, "dvc", "repro")) == set()
    commit(repo, "first run")
    base_branch = sh(repo, "git", "rev-parse", "--abbrev-ref", "HEAD").strip()

    # 2. forced reruns give byte-identical outputs and ask the teacher nothing
    for stage in ("fetch", "llm_label", "cluster_sample", "split", "argilla_review"):
        sh(repo, "dvc", "repro", "-f", "-s", stage)
    assert sh(repo, "git", "status", "--porcelain") == "", "forced reruns must give byte-identical outputs"
    assert sum(fake_teacher.requests.values()) == LABELLED

    # 3. share through a remote: a fresh clone pulls, reruns nothing and pays for nothing
    sh(repo, "dvc", "remote", "add", "-d", "shared", str(tmp_path / "remote"))
    commit(repo, "add remote")
    sh(repo, "dvc", "push", "--run-cache")
    sh(tmp_path, "git", "clone", "-q", str(repo), str(tmp_path / "clone"))
    sh(tmp_path / "clone", "dvc", "pull")
    assert stages_run(sh(tmp_path / "clone", "dvc", "repro")) == set()
    assert sum(fake_teacher.requests.values()) == LABELLED

    # 4. a branch with other params: dvc params diff and metrics diff show the change
    sh(repo, "git", "checkout", "-q", "-b", "test-2020-only")
    edit_params(repo, lambda p: p["split"]["ranges"]["test"].update(start="2020-01-01"))
    assert stages_run(sh(repo, "dvc", "repro")) == {"split", "argilla_review", "evaluate"}
    commit(repo, "test on 2020 only")
    params_diff = json.loads(sh(repo, "dvc", "params", "diff", base_branch, "--json"))
    change = params_diff["params.yaml"]["split.ranges.test.start"]
    assert (change["old"], change["new"]) == ("2019-01-01", "2020-01-01")
    metrics_diff = json.loads(sh(repo, "dvc", "metrics", "diff", base_branch, "--json"))
    test_records = metrics_diff["metrics/metrics.json"]["test_records"]
    assert test_records["new"] < test_records["old"]
    sh(repo, "git", "checkout", "-q", base_branch)
    sh(repo, "dvc", "checkout")

    # 5. a prompt edit reruns labelling (every headline asked again, once) and everything downstream
    prompt = repo / "data/prompts/company_ner.yaml"
    prompt.write_text(prompt.read_text().replace(
        "system: |\n", f"system: |\n  Count stock indices as companies too ({INDICES_MARKER}).\n", 1))
    assert stages_run(sh(repo, "dvc", "repro")) == ALL_STAGES - {"fetch"}
    assert sum(fake_teacher.requests.values()) == 2 * LABELLED
