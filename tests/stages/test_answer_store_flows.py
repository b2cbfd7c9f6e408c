"""Paid answers are the checkout's, not a branch's: paid on one branch, they are read on every other; pushed
from one clone, pulled in another, they are not bought again (a real git + DVC repo, a local DVC remote)."""

from __future__ import annotations

import json
import shutil

import pytest

from tests.helpers import LABELLED, commit, sh


def planned_requests(repo) -> int:
    output = sh(repo, "python", "-m", "stages.llm_label", "--plan")
    return json.loads(output[output.index("{") : output.rindex("}") + 1])["requests_to_make"]


@pytest.mark.slow
def test_answers_paid_on_one_branch_are_read_on_another_and_travel_with_dvc_push_and_pull(repo, fake_teacher, tmp_path):
    first = sh(repo, "git", "rev-parse", "--abbrev-ref", "HEAD").strip()
    sh(repo, "git", "branch", "other")  # a branch that has not paid for these answers
    sh(repo, "dvc", "repro", "llm_label")
    paid = sum(fake_teacher.requests.values())
    assert paid >= LABELLED and planned_requests(repo) == 0
    commit(repo, "labelled")

    sh(repo, "git", "checkout", "-q", "other")
    shutil.rmtree(repo / "data/labels/llm_answers")  # as `dvc checkout` leaves an output this branch has not made
    assert planned_requests(repo) == 0, "the store is every branch's"
    sh(repo, "dvc", "repro", "llm_label")
    assert sum(fake_teacher.requests.values()) == paid
    assert sorted(p.name for p in (repo / "data/labels/llm_answers").iterdir()) == sorted(
        p.name for p in (repo / "data/llm_cache").glob("answers-*.jsonl")
    ), "the branch's output carries the shards it read, so its own `dvc push` shares them"
    commit(repo, "labelled on the other branch")

    sh(repo, "git", "checkout", "-q", first)
    sh(repo, "dvc", "remote", "add", "-d", "shared", str(tmp_path / "remote"))
    commit(repo, "remote")
    sh(repo, "dvc", "push", "fetch", "llm_label")
    clone = tmp_path / "clone"
    sh(tmp_path, "git", "clone", "-q", str(repo), str(clone))
    sh(clone, "dvc", "pull", "fetch", "llm_label")
    assert not (clone / "data/llm_cache").exists()
    assert planned_requests(clone) == 0
    sh(clone, "dvc", "repro", "--force", "--single-item", "llm_label")
    assert sum(fake_teacher.requests.values()) == paid, "pulled answers are not bought again"
