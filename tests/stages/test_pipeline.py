"""The DVC flows users rely on, on a scratch copy of the repo with a real local teacher server."""

import json

import pytest
import yaml

from tests.helpers import ALL_STAGES, ALWAYS, INDICES_MARKER, LABELLED, commit, edit_params, sh, stages_run


@pytest.mark.slow
def test_the_dvc_user_flows(repo, fake_teacher, tmp_path):
    # 1. the whole DAG runs, `dvc metrics show` is the test scores per model, and a second repro runs nothing
    assert stages_run(sh(repo, "dvc", "repro")) == ALL_STAGES
    assert sum(fake_teacher.requests.values()) == LABELLED
    shown = next(iter(json.loads(sh(repo, "dvc", "metrics", "show", "--json")).values()))["data"]
    quality = {path: v for path, v in shown.items() if path.startswith("metrics/quality/")}
    scores = {path.removeprefix("metrics/quality/").removesuffix(".json"): v["data"] for path, v in quality.items()}
    assert set(scores) == {"teacher", "gliner", "spanmarker", "gliner_export", "spanmarker_export"}
    assert set(shown) - set(quality) == {"metrics/linking.json"}  # nothing else: no stage internals, no timings
    assert shown["metrics/linking.json"]["data"]["gold_mentions"] > 0
    assert {s["reference"] for s in scores.values()} == {"human"} and scores["gliner"]["headlines"] > 0
    assert scores["teacher"]["f1"] < 1.0  # the demo's reviewer file is the reference
    for model in ("gliner", "spanmarker", "teacher"):
        assert 0.0 <= scores[model]["f1_low"] <= scores[model]["f1"] <= scores[model]["f1_high"] <= 1.0
    assert "bare encoder" in json.loads((repo / "metrics/metrics.json").read_text())["gliner_zero_shot"]
    assert stages_run(sh(repo, "dvc", "repro")) == ALWAYS
    commit(repo, "first run")
    base_branch = sh(repo, "git", "rev-parse", "--abbrev-ref", "HEAD").strip()

    # 2. forced reruns give byte-identical outputs (this machine's timings are a git-ignored report, in no DVC
    # output, so dvc.lock stays too) and ask the teacher nothing
    stages = (
        "fetch",
        "llm_label",
        "cluster_sample",
        "split",
        "scout",
        "argilla_pull",
        "argilla_review",
        "argilla_push",
        "evaluate",
        "tag",
        "link",
    )
    for stage in stages:
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
    # fetch checks split.ranges against its dates (the same table comes out): labelling does not rerun; the review
    # check reruns as its input (the split) changed, and its snapshot does not
    rerun = {
        "fetch",
        "split",
        "argilla_pull",
        "scout",
        "argilla_review",
        "argilla_push",
        "evaluate",
        "link",
    }  # link: the watch cutoff
    assert stages_run(sh(repo, "dvc", "repro")) == ALWAYS | rerun
    commit(repo, "test on 2020 only")
    params_diff = json.loads(sh(repo, "dvc", "params", "diff", base_branch, "--json"))
    change = params_diff["params.yaml"]["split.ranges.test.start"]
    assert (change["old"], change["new"]) == ("2019-01-01", "2020-01-01")
    metrics_diff = json.loads(sh(repo, "dvc", "metrics", "diff", base_branch, "--json"))
    declared = {f"metrics/quality/{model}.json" for model in scores} | {"metrics/linking.json"}
    assert {path for path in metrics_diff} <= declared  # no timings
    test_headlines = metrics_diff["metrics/quality/gliner.json"]["headlines"]
    assert test_headlines["new"] < test_headlines["old"]
    sh(repo, "git", "checkout", "-q", base_branch)
    sh(repo, "dvc", "checkout")

    # 5. a prompt edit reruns labelling (every headline asked again, once) and everything downstream
    prompt = repo / "data/prompts/company_ner.yaml"
    prompt.write_text(
        prompt.read_text().replace(
            "system: |\n", f"system: |\n  Count stock indices as companies too ({INDICES_MARKER}).\n", 1
        )
    )
    # A student's servable folder is rebuilt only when the student itself changed (here every sampled headline is
    # human-labelled, so a student may train to the very same bytes), and evaluate reruns only when an export, the
    # reviewed test split it scores on or the train split it counts reviews of (the rounds table) changed.
    reviewed = [repo / f"data/reviewed/{split}.parquet" for split in ("test", "train")]
    before, splits_before = model_hashes(repo), [path.read_bytes() for path in reviewed]
    ran = stages_run(sh(repo, "dvc", "repro"))
    rebuilt = {f"export@{name}" for name, md5 in model_hashes(repo).items() if md5 != before[name]}
    changed = [path.read_bytes() for path in reviewed] != splits_before
    scored = {"evaluate"} if rebuilt or changed else set()
    assert ran == ALL_STAGES - {"fetch", "export@gliner", "export@spanmarker", "evaluate"} | rebuilt | scored
    assert sum(fake_teacher.requests.values()) == 2 * LABELLED


def model_hashes(repo) -> dict[str, str]:
    """The hash dvc.lock records for each student's trained folder."""
    lock = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]
    return {
        name: next(out["md5"] for out in lock[f"finetune_{name}"]["outs"] if out["path"] == f"models/{name}")
        for name in ("gliner", "spanmarker")
    }
