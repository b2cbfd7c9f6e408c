"""scripts/results_table.py --print: what `make demo` ends with; this run's table, and no file written."""

import json
import sys

from scripts import results_table
from tests.helpers import ROOT


def test_print_shows_this_runs_table_with_its_speeds_and_writes_nothing(tmp_path, monkeypatch, capsys):
    before = {path: path.read_bytes() for path in (ROOT / "README.md", ROOT / "docs/benchmarks.md")}
    speed = {"gliner": {"headlines_per_s": 12.3, "usd_per_million_headlines_cpu": 2.26}}
    monkeypatch.setattr(results_table, "RUN_SPEED_FILE", tmp_path / "evaluate.json")
    (tmp_path / "evaluate.json").write_text(json.dumps(speed))
    monkeypatch.setattr(sys, "argv", ["results_table", "--print"])
    results_table.main()
    printed = capsys.readouterr().out
    assert results_table.RUN_SPEEDS in printed and "| GLiNER fine-tuned |" in printed
    assert "| 12.3 | 2.26 |" in printed.split("| GLiNER fine-tuned |")[1].splitlines()[0]

    (tmp_path / "evaluate.json").unlink()  # no run here yet (a fresh clone): the cost benchmark's speeds
    results_table.main()
    assert results_table.BENCHMARK_SPEEDS in capsys.readouterr().out
    assert {path: path.read_bytes() for path in before} == before
