"""The hub-ready folder: the model card as huggingface_hub reads it (metadata, model-index, deterministic), and
scripts/push_to_hub.py checked offline up to the network call (HfApi's calls recorded, not sent)."""

import json

import pytest
from huggingface_hub import HfApi, ModelCard

from scripts import push_to_hub
from stages.serving.package import ship_handler
from stages.students.card import CardData, render
from stages.students.runtime import EXPORT_FILE
from stages.students.settings import TrainingSummary, write_settings


def card_data(datasets: tuple[str, ...] = (), **changes) -> CardData:
    fields = dict(
        student="gliner",
        title="GLiNER company-name student",
        base_model="local-minilm",
        revision=None,
        entity_label="company",
        epochs=6,
        sizes={"train": 280, "train_human": 280, "valid": 90, "valid_human": 90},
        best={"epoch": 5, "valid_precision": 0.81, "valid_recall": 0.77, "valid_f1": 0.79},
        params={"learning_rate": 0.0001},
        examples=[],
    )
    return CardData(
        TrainingSummary(**fields | changes),
        export_scores={"precision": 0.8, "recall": 0.75, "f1": 0.7742},
        datasets=list(datasets),
        versions={"gliner": "0.2.29"},
    )


def test_card_metadata_is_what_the_hub_reads_and_the_same_on_every_render():
    exported = ModelCard(render(card_data(datasets=("Zihan1004/FNSPID",))))
    data = exported.data
    assert (data.pipeline_tag, data.library_name, data.license) == ("token-classification", "gliner", "apache-2.0")
    assert data.base_model == "sentence-transformers/all-MiniLM-L6-v2" and data.datasets == ["Zihan1004/FNSPID"]
    assert {"onnx", "endpoints-template"} <= set(data.tags)
    f1 = [r for r in data.eval_results if r.metric_type == "f1"]
    assert [(r.dataset_split, r.metric_value, r.dataset_type) for r in f1] == [
        ("validation", 0.7742, "Zihan1004/FNSPID")
    ]
    assert "handler.py" in exported.text and "not in this card" in exported.text  # says why no test score yet
    hub_base = ModelCard(render(card_data(base_model="EmergentMethods/gliner_medium_news-v2.1", revision="abc1234")))
    assert hub_base.data.base_model == "EmergentMethods/gliner_medium_news-v2.1" and "`abc1234`" in hub_base.text
    assert render(card_data()) == render(card_data())


@pytest.fixture
def export_folder(tmp_path):
    """An export's files as the export stage writes them (a stand-in graph: nothing here runs the model)."""
    folder = tmp_path / "gliner_export"
    folder.mkdir()
    write_settings(
        folder,
        {
            "entity_label": "company",
            "threshold": 0.5,
            "format": "onnx-int8",
            "student": "gliner",
        },
    )
    (folder / EXPORT_FILE).write_bytes(b"graph")
    (folder / "README.md").write_text(render(card_data()))
    ship_handler(folder)
    metrics = tmp_path / "metrics.json"
    metrics.write_text(
        json.dumps(
            {
                "reference": "human",
                "test_records": 31,
                "gliner_export": {
                    "precision": 0.9,
                    "recall": 0.9,
                    "f1": 0.9,
                    "f1_ci_low": 0.81,
                    "f1_ci_high": 0.99,
                    "partial_f1": 0.97,
                },
            }
        )
    )
    return folder, metrics


def test_push_uploads_a_copy_whose_card_has_the_test_scores(export_folder, monkeypatch):
    folder, metrics = export_folder
    calls = {}
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(HfApi, "create_repo", lambda self, repo_id, **kw: calls.setdefault("create", (repo_id, kw)))

    def upload_folder(self, **kw):  # what would be sent, read while the staged copy exists
        staged = kw["folder_path"]
        calls["upload"] = kw | {
            "card": ModelCard.load(f"{staged}/README.md"),
            "token": self.token,
            "handler": (folder / "handler.py").read_text() == open(f"{staged}/handler.py").read(),
        }
        return "commit-oid"

    monkeypatch.setattr(HfApi, "upload_folder", upload_folder)
    before = (folder / "README.md").read_text()
    out = push_to_hub.push("me/headline-ner-gliner", folder, metrics, private=True, token="hf_x", dry_run=False)
    assert calls["create"] == ("me/headline-ner-gliner", {"repo_type": "model", "private": True, "exist_ok": True})
    upload = calls["upload"]
    assert (upload["repo_id"], upload["repo_type"], upload["token"], upload["handler"]) == (
        "me/headline-ner-gliner",
        "model",
        "hf_x",
        True,
    )
    test_f1 = [r for r in upload["card"].data.eval_results if r.dataset_split == "test" and r.metric_type == "f1"]
    assert [r.metric_value for r in test_f1] == [0.9] and "F1 0.9000 [95% CI 0.8100, 0.9900]" in upload["card"].text
    assert (folder / "README.md").read_text() == before, "the DVC output itself is left as it is"
    assert out["commit"] == "commit-oid" and "added to the card" in out["note"]


def test_push_checks_the_folder_and_the_offline_switch_before_any_call(export_folder, monkeypatch):
    folder, metrics = export_folder
    monkeypatch.setattr(HfApi, "create_repo", lambda *a, **k: pytest.fail("no call may be made"))
    dry = push_to_hub.push("me/x", folder, metrics, private=False, token=None, dry_run=True)
    assert "handler.py" in dry["file_list"] and "code/stages/serving/handler.py" in dry["file_list"]
    metrics.write_text(json.dumps({"reference": "human", "test_records": 31, "spanmarker_export": {"f1": 0.5}}))
    note = push_to_hub.push("me/x", folder, metrics, private=False, token=None, dry_run=True)["note"]
    assert "has no scores of gliner_export" in note
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(SystemExit, match="HF_HUB_OFFLINE is set"):
        push_to_hub.push("me/x", folder, metrics, private=False, token=None, dry_run=False)
    (folder / "handler.py").unlink()
    with pytest.raises(SystemExit, match=r"missing \['handler.py'\]"):
        push_to_hub.push("me/x", folder, metrics, private=False, token=None, dry_run=True)
