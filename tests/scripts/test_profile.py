"""The switch from the demo to the case study: a profile written into params.yaml, comments kept, validated."""

import shutil
import subprocess
import sys

import yaml

from tests.helpers import ROOT

ENDPOINT = "https://my-llama.endpoints.huggingface.cloud"


def apply(params, *sets):
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "scripts.apply_profile",
            "case_study",
            "--params",
            str(params),
            *(arg for s in sets for arg in ("--set", s)),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )


def test_the_case_study_profile_turns_the_demo_into_the_case_studys_run(tmp_path):
    params = tmp_path / "params.yaml"
    shutil.copy(ROOT / "params.yaml", params)
    run = apply(params, f"llm_label.endpoint.base_url={ENDPOINT}")
    assert run.returncode == 0, run.stderr
    written = yaml.safe_load(params.read_text())
    assert written["fetch"]["kind"] == "hf_dataset" and written["fetch"]["filters"] == [
        {"column": "Url", "contains": "benzinga.com"}
    ]
    assert written["llm_label"]["endpoint"]["base_url"] == ENDPOINT and written["llm_label"]["limit"] is None
    assert written["llm_label"]["extractive"]["free_names"] is True
    assert written["cluster_sample"]["sample_size"] == 2714
    assert (written["finetune_gliner"]["recipe"], written["finetune_spanmarker"]["recipe"]) == (
        "case_study",
        "hub_orgs",
    )
    shipped = yaml.safe_load((ROOT / "params.yaml").read_text())
    assert written["split"] == shipped["split"] and written["evaluate"] == shipped["evaluate"]  # the rest stays
    assert "# One section per stage" in params.read_text()  # and so do the comments
    again = apply(params, f"llm_label.endpoint.base_url={ENDPOINT}")
    assert "changed 0 key(s)" in again.stdout


def test_a_required_value_or_a_bad_one_changes_nothing(tmp_path):
    params = tmp_path / "params.yaml"
    shutil.copy(ROOT / "params.yaml", params)
    before = params.read_text()
    run = apply(params)
    assert run.returncode == 1 and "give --set llm_label.endpoint.base_url=..." in run.stderr
    run = apply(params, "llm_label.endpoint.base_url=htp:/oops")
    assert run.returncode == 1 and "llm_label.endpoint.base_url: 'htp:/oops' is not allowed" in run.stderr
    assert params.read_text() == before


def test_make_case_study_passes_the_endpoint():
    dry = subprocess.run(["make", "-n", "case-study", f"ENDPOINT={ENDPOINT}"], cwd=ROOT, capture_output=True, text=True)
    assert f"python -m scripts.apply_profile case_study --set llm_label.endpoint.base_url={ENDPOINT}" in dry.stdout


def profile(name, params, *args):
    return subprocess.run(
        [sys.executable, "-m", "scripts.apply_profile", name, "--params", str(params), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )


def test_a_profile_then_its_inverse_gives_params_yaml_back_byte_for_byte(tmp_path):
    params, undo = tmp_path / "params.yaml", tmp_path / "undo.yaml"
    shutil.copy(ROOT / "params.yaml", params)
    shipped = params.read_bytes()
    run = profile("case_study", params, "--set", f"llm_label.endpoint.base_url={ENDPOINT}", "--inverse", str(undo))
    assert run.returncode == 0 and "changed 25 key(s)" in run.stdout, run.stderr
    changed = params.read_text().splitlines()
    assert len(changed) == len(shipped.splitlines())  # no line added, removed or re-wrapped
    for old, new in zip(shipped.decode().splitlines(), changed):
        if old != new:  # a changed value: its key and its comment stay as they were
            assert old.split(":")[0] == new.split(":")[0] and old.partition(" #")[2] == new.partition(" #")[2], new
    back = profile(str(undo), params)
    assert back.returncode == 0 and "changed 25 key(s)" in back.stdout, back.stderr
    assert params.read_bytes() == shipped


def test_a_profile_key_params_yaml_does_not_set_changes_nothing(tmp_path):
    params = tmp_path / "params.yaml"
    shutil.copy(ROOT / "params.yaml", params)
    before = params.read_bytes()
    run = apply(params, f"llm_label.endpoint.base_url={ENDPOINT}", "tag.batch_sise=8")
    assert run.returncode == 1 and "tag.batch_sise: params.yaml has no such key" in run.stderr
    assert params.read_bytes() == before
