"""Real tiny training runs of both students on a fixture of sample headlines."""
import json
import shutil
import subprocess
import sys

import pytest

from stages.common import gliner_student, spanmarker_student
from stages.common.params import load_params
from stages.common.training import SETTINGS_FILE, with_recipe
from tests.conftest import ROOT

STUDENTS = {"finetune_gliner": gliner_student, "finetune_spanmarker": spanmarker_student}
PROBE = ["Apple Shares Up 5% After Earnings Beat", "Gold Prices Rise As Dollar Weakens"]


@pytest.mark.slow
@pytest.mark.parametrize("section", sorted(STUDENTS))
def test_tiny_training_saves_best_checkpoint_that_reloads_in_a_fresh_process(section, gold, tmp_path):
    records = [{"id": f"{i:03d}", "text": g["text"], "spans": g["spans"]} for i, g in enumerate(gold[:40])]
    params = with_recipe(load_params(section, ROOT / "params.yaml"), section) | {"epochs": 3}
    out = tmp_path / "model"
    result = STUDENTS[section].train(params, records[:30], records[30:], out)

    losses = [h["train_loss"] for h in result["history"]]
    assert len(losses) == 3 and losses[-1] < losses[0]
    assert result["best_valid_f1"] == max(h["valid_f1"] for h in result["history"])
    assert (out / SETTINGS_FILE).exists() and not out.with_name("model.partial").exists()
    for path in out.rglob("*.json"):  # a saved model must not point at this machine's files
        assert sys.prefix not in path.read_text(), f"{path} names a path of this machine"

    moved = shutil.move(out, tmp_path / "elsewhere")  # as if pulled to another machine
    module = STUDENTS[section].__name__
    code = (f"import json, sys; from pathlib import Path; import {module} as student; "
            f"model, predict = student.load(Path(sys.argv[1])); print(json.dumps(predict(json.loads(sys.argv[2]))))")
    run = subprocess.run([sys.executable, "-c", code, str(moved), json.dumps(PROBE)], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    predictions = json.loads(run.stdout.strip().splitlines()[-1])
    assert len(predictions) == len(PROBE)
    for text, spans in zip(PROBE, predictions):
        assert all(text[s["start"]:s["end"]] == s["text"] for s in spans)


def test_unreachable_hub_base_model_names_the_param_to_change():
    with pytest.raises(SystemExit, match=r"finetune_gliner.recipe: offline_minilm"):
        gliner_student.build_model("EmergentMethods/gliner_medium_news-v2.1", 8)
    sizes = {"model_max_length": 32, "marker_max_length": 48, "entity_max_length": 6}
    with pytest.raises(SystemExit, match=r"(?s)cannot load base model 'tomaarsen/span-marker-bert-base-orgs'.*"
                                         r"finetune_spanmarker.recipe"):
        spanmarker_student.build_model({"base_model": "tomaarsen/span-marker-bert-base-orgs", **sizes})


def test_unreviewed_headlines_train_with_teacher_labels_or_not_at_all_and_humans_pick_the_epoch():
    from stages.common.training import human_or_all, unreviewed_rule
    records = [{"id": "a", "label_source": "human"}, {"id": "b", "label_source": "llm"}]
    assert unreviewed_rule(records, "keep") == records and unreviewed_rule(records, "drop") == records[:1]
    with pytest.raises(SystemExit, match=r"unreviewed must be one of \('keep', 'drop'\), got 'weight'"):
        unreviewed_rule(records, "weight")
    assert human_or_all(records) == records[:1] and human_or_all(records[1:]) == records[1:]
