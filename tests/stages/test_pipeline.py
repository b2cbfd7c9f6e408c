"""The DVC flows users rely on, on a scratch copy of the repo with a real local teacher server."""

import json

import pytest

from tests.helpers import ALL_STAGES, ALWAYS, INDICES_MARKER, LABELLED, commit, edit_params, sh, stages_run


@pytest.mark.slow
def test_the_dvc_user_flows(repo, fake_teacher, tmp_path):
    # 1. the whole DAG runs, prints the three F1s, and a second repro runs nothing but the review check
    assert stages_run(sh(repo, "dvc", "repro")) == ALL_STAGES
    assert sum(fake_teacher.requests.values()) == LABELLED
    metrics = json.loads(sh(repo, "dvc", "metrics", "show", "--json"))
    scores = next(iter(metrics.values()))["data"]["metrics/metrics.json"]["data"]
    assert {"gliner", "spanmarker", "teacher"} <= set(scores) and scores["test_records"] > 0
    assert scores["reference"] == "human" and scores["teacher"]["f1"] < 1.0  # the demo's reviewer file is the reference
    for model in ("gliner", "spanmarker", "teacher"):
        assert 0.0 <= scores[model]["f1_ci_low"] <= scores[model]["f1"] <= scores[model]["f1_ci_high"] <= 1.0
    assert "bare encoder" in scores["gliner_zero_shot"]
    assert stages_run(sh(repo, "dvc", "repro")) == ALWAYS
    commit(repo, "first run")
    base_branch = sh(repo, "git", "rev-parse", "--abbrev-ref", "HEAD").strip()

    # 2. forced reruns give byte-identical outputs and ask the teacher nothing
    for stage in ("fetch", "llm_label", "cluster_sample", "split", "scout", "argilla_sync", "argilla_review"):
        sh(repo, "dvc", "repro", "-f", "-s", stage)
    assert sh(repo, "git", "status", "--porcelain") == "", "forced reruns must give byte-identical outputs"
    assert sum(fake_teacher.requests.values()) == LABELLED

    # 3. share through a remote: a fresh clone pulls, reruns nothing and pays for nothing
    sh(repo, "dvc", "remote", "add", "-d", "shared", str(tmp_path / "remote"))
    commit(repo, "add remote")
    sh(repo, "dvc", "push", "--run-cache")
    sh(tmp_path, "git", "clone", "-q", str(repo), str(tmp_path / "clone"))
    sh(tmp_path / "clone", "dvc", "pull")
    assert stages_run(sh(tmp_path / "clone", "dvc", "repro")) == ALWAYS
    assert sum(fake_teacher.requests.values()) == LABELLED

    # 4. a branch with other params: dvc params diff and metrics diff show the change
    sh(repo, "git", "checkout", "-q", "-b", "test-2020-only")
    edit_params(repo, lambda p: p["split"]["ranges"]["test"].update(start="2020-01-01"))
    assert stages_run(sh(repo, "dvc", "repro")) == ALWAYS | {"split", "scout", "argilla_review", "evaluate"}
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
    prompt.write_text(
        prompt.read_text().replace(
            "system: |\n", f"system: |\n  Count stock indices as companies too ({INDICES_MARKER}).\n", 1
        )
    )
    assert stages_run(sh(repo, "dvc", "repro")) == ALL_STAGES - {"fetch"}
    assert sum(fake_teacher.requests.values()) == 2 * LABELLED
