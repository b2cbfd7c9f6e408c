"""Paid answers are the checkout's, not a branch's: paid on one branch, they are read on every other; pushed
from one clone, pulled in another, they are not bought again (a real git + DVC repo, a local DVC remote)."""

from __future__ import annotations

import json
import shutil

import pytest

from tests.helpers import LABELLED, commit, sh


def published_keys(repo) -> list[str]:
    return sorted(json.loads(line)["key"] for p in (repo / "data/labels/llm_answers").iterdir() for line in p.open())


def published(repo) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((repo / "data/labels/llm_answers").iterdir())}


def stored_keys(repo) -> list[str]:
    return sorted(json.loads(line)["key"] for p in (repo / "data/llm_cache").iterdir() for line in p.open())


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
    assert published_keys(repo) == stored_keys(repo), "the branch's output carries the answers it read"
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
    assert published(clone) == published(repo), "answers seeded from a pull publish the bytes their payer did"


@pytest.mark.slow
def test_answers_paid_again_on_another_machine_leave_the_lock_unchanged(repo, fake_teacher):
    """The published answers hold no latency, retry count or concurrency: a run that pays for the same answers
    again (another machine, an empty store) writes the same bytes, so `make demo` leaves `git status` clean."""
    sh(repo, "dvc", "repro", "llm_label")
    commit(repo, "labelled")
    paid = sum(fake_teacher.requests.values())
    shutil.rmtree(repo / "data/llm_cache")
    shutil.rmtree(repo / "data/labels/llm_answers")
    fake_teacher.delay_s = 0.02  # other latencies than the first run's
    sh(repo, "dvc", "repro", "--force", "--single-item", "llm_label")
    assert sum(fake_teacher.requests.values()) == 2 * paid
    assert sh(repo, "git", "status", "--porcelain") == ""
