"""A stage's entry: a domain error becomes its one-line message and exit code 1; a bug keeps its traceback."""

from __future__ import annotations

import subprocess
import sys

import pytest

from stages.core.cli import run_stage
from stages.core.errors import InputError, PipelineError
from tests.helpers import ROOT


def test_a_domain_error_ends_the_stage_with_its_message():
    def main() -> None:
        raise InputError("data/x.parquet: not found (run the upstream stage first: dvc repro)")

    with pytest.raises(SystemExit) as exit_:
        run_stage(main)
    assert exit_.value.code == "data/x.parquet: not found (run the upstream stage first: dvc repro)"


def test_anything_else_is_a_bug_and_keeps_its_traceback():
    def main() -> None:
        raise KeyError("label_spans")

    with pytest.raises(KeyError):
        run_stage(main)
    assert not issubclass(KeyError, PipelineError)


def test_a_stage_run_as_dvc_runs_it_prints_one_line_and_exits_1(tmp_path):
    missing = tmp_path / "sample.parquet"
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "stages.split",
            "--sample",
            str(missing),
            "--out-dir",
            str(tmp_path),
            "--metrics",
            str(tmp_path / "m.json"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert run.returncode == 1
    assert run.stderr.strip().splitlines()[-1] == f"{missing}: not found (run the upstream stage first: dvc repro)"
    assert "Traceback" not in run.stderr
