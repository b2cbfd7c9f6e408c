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
        params[section].update(epochs=1)
    (scratch / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    sh(scratch, "git", "init", "-q")
    sh(scratch, "git", "add", "-A")
    sh(scratch, "git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "scratch")
    return scratch


@pytest.mark.slow
def test_repro_is_complete_idempotent_deterministic_and_reruns_only_what_a_prompt_edit_touches(repo, fake_teacher):
    assert stages_run(sh(repo, "dvc", "repro")) == ALL_STAGES
    assert sum(fake_teacher.requests.values()) == LABELLED

    metrics = json.loads(sh(repo, "dvc", "metrics", "show", "--json"))
    scores = next(iter(metrics.values()))["data"]["metrics/metrics.json"]["data"]
    assert {"gliner", "spanmarker", "teacher"} <= set(scores) and scores["test_records"] > 0
    assert all(0.0 <= scores[m]["f1"] <= 1.0 for m in ("gliner", "spanmarker", "teacher"))

    assert stages_run(sh(repo, "dvc", "repro")) == set()  # nothing changed: nothing runs

    sh(repo, "git", "add", "-A")
    sh(repo, "git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "first run")
    for stage in ("fetch", "llm_label", "cluster_sample", "split", "argilla_review"):
        sh(repo, "dvc", "repro", "-f", "-s", stage)
    assert sh(repo, "git", "status", "--porcelain") == "", "forced reruns must give byte-identical outputs"
    assert sum(fake_teacher.requests.values()) == LABELLED, "a forced rerun must hit the answer cache"

    prompt = repo / "data/prompts/company_ner.yaml"
    prompt.write_text(prompt.read_text().replace(
        "system: |\n", f"system: |\n  Count stock indices as companies too ({INDICES_MARKER}).\n", 1))
    assert stages_run(sh(repo, "dvc", "repro")) == ALL_STAGES - {"fetch"}
    assert sum(fake_teacher.requests.values()) == 2 * LABELLED  # every headline asked again, once
