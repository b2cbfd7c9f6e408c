"""Real tiny training runs of both students on a fixture of sample headlines."""
import json
import subprocess
import sys

import pytest

from stages import finetune_gliner, finetune_spanmarker
from stages.common.params import load_params
from stages.common.training import SETTINGS_FILE
from tests.conftest import ROOT

STUDENTS = {"finetune_gliner": finetune_gliner, "finetune_spanmarker": finetune_spanmarker}
PROBE = ["Apple Shares Up 5% After Earnings Beat", "Gold Prices Rise As Dollar Weakens"]


@pytest.mark.slow
@pytest.mark.parametrize("section", sorted(STUDENTS))
def test_tiny_training_saves_best_checkpoint_that_reloads_in_a_fresh_process(section, gold, tmp_path):
    records = [{"id": f"{i:03d}", "text": g["text"], "spans": g["spans"]} for i, g in enumerate(gold[:40])]
    params = load_params(section, ROOT / "params.yaml") | {"epochs": 3}
    out = tmp_path / "model"
    result = STUDENTS[section].train(params, records[:30], records[30:], out)

    losses = [h["train_loss"] for h in result["history"]]
    assert len(losses) == 3 and losses[-1] < losses[0]
    assert result["best_valid_f1"] == max(h["valid_f1"] for h in result["history"])
    assert (out / SETTINGS_FILE).exists() and not out.with_name("model.partial").exists()

    code = (f"import json, sys; from pathlib import Path; from stages import {section}; "
            f"model, predict = {section}.load(Path(sys.argv[1])); print(json.dumps(predict(json.loads(sys.argv[2]))))")
    run = subprocess.run([sys.executable, "-c", code, str(out), json.dumps(PROBE)], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    predictions = json.loads(run.stdout.strip().splitlines()[-1])
    assert len(predictions) == len(PROBE)
    for text, spans in zip(PROBE, predictions):
        assert all(text[s["start"]:s["end"]] == s["text"] for s in spans)
