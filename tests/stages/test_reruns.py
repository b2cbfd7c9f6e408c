"""What a params edit reruns, asked of real `dvc status` on a scratch copy of the project whose every stage is
recorded as up to date (`dvc commit` over placeholder data: nothing is trained or run)."""

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from scripts.worktree import copy_worktree
from tests.helpers import sh


def dvc_status(repo: Path) -> dict:
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    run = subprocess.run(["dvc", "status", "--json"], cwd=repo, env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    return json.loads(run.stdout)


@pytest.fixture(scope="module")
def up_to_date(tmp_path_factory) -> tuple[Path, dict, set[str]]:
    """A copy of the working tree in which every dependency and output dvc.yaml names exists (a placeholder where
    the pipeline would write it) and `dvc commit` has recorded every stage as run; its params, and the stages
    `dvc status` reports there all the same (one marked always_changed)."""
    from dvc.dependency.param import ParamsDependency
    from dvc.repo import Repo

    repo = copy_worktree(tmp_path_factory.mktemp("dag"))
    sh(repo, "git", "init", "-q")
    with Repo(str(repo)) as dvc:
        paths = {
            Path(item.fs_path).relative_to(repo)
            for stage in dvc.index.stages
            for item in (*stage.deps, *stage.outs)
            if not isinstance(item, ParamsDependency)
        }
    for path in sorted(paths):  # parents first: an output directory before the files a stage reads inside it
        if not (repo / path).exists():
            if path.suffix:
                (repo / path).parent.mkdir(parents=True, exist_ok=True)
                (repo / path).write_text(str(path))
            else:
                (repo / path).mkdir(parents=True)
                (repo / path / "placeholder").write_text(str(path))
    sh(repo, "dvc", "commit", "-f")
    always = set(dvc_status(repo))
    assert always <= {"argilla_pull"}, always  # the review check, where dvc.yaml marks it always_changed
    return repo, yaml.safe_load((repo / "params.yaml").read_text()), always


def set_key(params: dict, dotted: str, value) -> dict:
    changed = copy.deepcopy(params)
    *parents, last = dotted.split(".")
    target = changed
    for part in parents:
        target = target[part]
    target[last] = value
    return changed


@pytest.mark.parametrize(
    "key, value, reruns",
    [
        # a decode setting acts where the student predicts: its export, evaluate, and tag (which tags with GLiNER);
        # no training, no scout, not the other student's export
        ("predict.gliner.threshold", 0.4, {"export@gliner", "evaluate", "tag"}),
        ("finetune_gliner.min_valid_f1", 0.2, {"finetune_gliner"}),  # the quality gate: its own stage only
        ("finetune_spanmarker.min_valid_f1", 0.2, {"finetune_spanmarker"}),
        # how a mention is linked: link, and the exports that bundle the linker; nothing retrains or relabels
        ("link.linker.min_score", 0.8, {"link", "export@gliner", "export@spanmarker"}),
        ("link.watch_top_names", 3, {"link"}),  # the watch is link's alone
    ],
)
def test_a_params_edit_reruns_only_the_stages_that_read_the_key(up_to_date, key, value, reruns):
    repo, params, always = up_to_date
    try:
        (repo / "params.yaml").write_text(yaml.safe_dump(set_key(params, key, value), sort_keys=False))
        status = dvc_status(repo)
    finally:
        (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    assert set(status) - always == reruns
    for stage in reruns:
        changed = status[stage][0]["changed deps"]["params.yaml"]
        # the key, the block declared around it (a student's decode block, link.linker), or a stage's own section
        assert set(changed) in ({key}, {key.rsplit(".", 1)[0]}, {key.split(".")[0]}), changed
