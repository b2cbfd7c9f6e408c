"""The installed command line (`headline-ner tag`): files, stdin and one headline in; JSON lines or a file out; a
model folder in this process (a fake predictor here, a real tiny student in the slow test) or a served student's
URL (a stand-in server speaking the served contract)."""

import csv
import io
import json
import logging
import tomllib

import pytest

from stages.serving import cli
from stages.teacher.local_server import free_port
from tests.helpers import PROBE, ROOT, Served


def apple_entities(texts: list[str]) -> list[list[dict]]:
    """What the endpoint handler answers for a student that finds `Apple` wherever a headline has it."""
    return [
        [
            {
                "entity_group": "company",
                "score": 0.91234,
                "word": "Apple",
                "start": t.find("Apple"),
                "end": t.find("Apple") + 5,
            }
        ]
        if "Apple" in t
        else []
        for t in texts
    ]


@pytest.fixture
def fake_model(tmp_path, monkeypatch):
    """A model folder whose 'student' is apple_entities; records the parameters and batches it was given."""
    calls: list[tuple[dict, list[str]]] = []

    def local_tagger(model_dir, parameters):
        assert model_dir.is_dir()

        def tag(texts):
            calls.append((parameters, texts))
            return apple_entities(texts)

        return tag

    monkeypatch.setattr(cli, "local_tagger", local_tagger)
    (tmp_path / "model").mkdir()
    return tmp_path / "model", calls


def run(argv: list[str], capsys) -> tuple[list[dict], str]:
    cli.main(argv)
    out, err = capsys.readouterr()
    return [json.loads(line) for line in out.splitlines()], err


def test_a_csv_column_is_tagged_in_batches_into_json_lines_with_progress_on_stderr(
    tmp_path, fake_model, capsys, caplog
):
    caplog.set_level(logging.INFO, logger="headline_ner")
    model, calls = fake_model
    source = tmp_path / "feed.csv"
    with open(source, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "title"])
        writer.writerows([["a", "Apple Shares Up"], ["b", "Gold Slips"], ["c", "Why Apple Fell"]])
    records, err = run(["tag", str(model), str(source), "--column", "title", "--batch-size", "2"], capsys)
    assert records == [
        {"id": "a", "title": "Apple Shares Up", "spans": [{"start": 0, "end": 5, "text": "Apple", "score": 0.9123}]},
        {"id": "b", "title": "Gold Slips", "spans": []},
        {"id": "c", "title": "Why Apple Fell", "spans": [{"start": 4, "end": 9, "text": "Apple", "score": 0.9123}]},
    ]
    assert [texts for _, texts in calls] == [["Apple Shares Up", "Gold Slips"], ["Why Apple Fell"]]
    assert calls[0][0] == {"batch_size": 2}
    assert "headline-ner tag: 100%" in err and "3/3" in err  # the progress bar
    assert "headline-ner tag: 3 headlines from" in caplog.text  # and the log (stderr too, outside pytest)
    assert "3 headlines, 2 with a company, 2 spans -> stdout" in caplog.text


def test_jsonl_stdin_and_one_headline_in_jsonl_or_csv_out(tmp_path, fake_model, capsys, monkeypatch):
    model, calls = fake_model
    source = tmp_path / "feed.jsonl"
    source.write_text('{"text": "Apple Up", "id": 1}\n\n"Gold Slips"\n')
    records, _ = run(["tag", str(model), str(source), "--threshold", "0.5"], capsys)
    assert [(r.get("id"), r["text"], len(r["spans"])) for r in records] == [(1, "Apple Up", 1), (None, "Gold Slips", 0)]
    assert calls[-1][0] == {"batch_size": 32, "threshold": 0.5}

    monkeypatch.setattr("sys.stdin", io.StringIO("Apple Up\n\nGold Slips\n"))
    records, _ = run(["tag", str(model), "-"], capsys)
    assert [r["text"] for r in records] == ["Apple Up", "Gold Slips"]
    records, _ = run(["tag", str(model), "--text", "Apple Up"], capsys)
    assert records == [{"text": "Apple Up", "spans": [{"start": 0, "end": 5, "text": "Apple", "score": 0.9123}]}]

    run(["tag", str(model), str(source), "--out", str(tmp_path / "out/tagged.csv")], capsys)
    rows = list(csv.DictReader(open(tmp_path / "out/tagged.csv")))
    assert [(r["text"], r["id"], json.loads(r["spans"])) for r in rows] == [
        ("Apple Up", "1", [{"start": 0, "end": 5, "text": "Apple", "score": 0.9123}]),
        ("Gold Slips", "", []),
    ]
    assert run(["tag", str(model), str(source), "--out", str(tmp_path / "tagged.jsonl")], capsys)[0] == []
    assert [json.loads(line)["text"] for line in open(tmp_path / "tagged.jsonl")] == ["Apple Up", "Gold Slips"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["feed.csv", "--column", "headline"], "feed.csv: no column 'headline'; it has ['id', 'title']"),
        (["feed.txt"], "feed.txt: expected a .csv or .jsonl file"),
        (["missing.csv"], "missing.csv: not found"),
        (["feed.csv", "--text", "Apple Up"], "give a file or --text, not both"),
        ([], "nothing to tag: give a CSV or JSONL file"),
        (["bad.jsonl"], "bad.jsonl:2: expected a JSON string or an object with a string 'text'"),
    ],
)
def test_bad_input_ends_with_one_line_naming_the_file(args, message, tmp_path, fake_model, monkeypatch):
    model, _ = fake_model
    monkeypatch.chdir(tmp_path)
    (tmp_path / "feed.csv").write_text("id,title\na,Apple Up\n")
    (tmp_path / "feed.txt").write_text("Apple Up\n")
    (tmp_path / "bad.jsonl").write_text('{"text": "Apple Up"}\n{"title": "Gold"}\n')
    with pytest.raises(SystemExit, match=message.replace("[", r"\[").replace("(", r"\(")):
        cli.main(["tag", str(model), *args])


def test_a_folder_that_is_no_student_is_refused(tmp_path):
    with pytest.raises(SystemExit, match=r"no such model folder"):
        cli.main(["tag", str(tmp_path / "nothing"), "--text", "Apple Up"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit, match=r"missing; .*empty was not written by a finetune or export stage"):
        cli.main(["tag", str(tmp_path / "empty"), "--text", "Apple Up"])


def test_a_served_student_is_posted_each_batch_and_a_busy_one_asked_again(capsys, caplog, monkeypatch):
    monkeypatch.setattr(cli.time, "sleep", lambda s: None)
    monkeypatch.setenv("MY_TOKEN", "secret")
    served = Served(apple_entities, busy=1)
    try:
        argv = ["tag", served.url, "--text", "Apple Up", "--token-env", "MY_TOKEN", "--batch-size", "8"]
        records, _ = run(argv, capsys)
    finally:
        served.stop()
    assert records == [{"text": "Apple Up", "spans": [{"start": 0, "end": 5, "text": "Apple", "score": 0.9123}]}]
    assert served.bodies == [{"inputs": ["Apple Up"], "parameters": {"batch_size": 8}}] * 2  # 503, then asked again
    assert served.headers[-1]["Authorization"] == "Bearer secret"
    assert "HTTP 503 from" in caplog.text and "asking again (attempt 2 of 4)" in caplog.text


@pytest.mark.parametrize(
    "reply, message",
    [
        (lambda texts: {"error": "x"}, r"expected a list of 1 lists of entities"),
        (lambda texts: [[{"start": 0, "end": 99, "score": 1.0}]], r"is no span of 'Apple Up'"),
    ],
)
def test_a_served_answer_that_is_not_the_contract_is_refused(reply, message, monkeypatch):
    served = Served(reply)
    try:
        with pytest.raises(SystemExit, match=message):
            cli.main(["tag", served.url, "--text", "Apple Up"])
    finally:
        served.stop()
    monkeypatch.setattr(cli.time, "sleep", lambda s: None)
    with pytest.raises(SystemExit, match=r"cannot reach http://127.0.0.1:\d+ \(.*\) after 4 attempts"):
        cli.main(["tag", f"http://127.0.0.1:{free_port()}", "--text", "Apple Up"])


def test_the_command_is_installed_with_the_project():
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    module, _, function = scripts["headline-ner"].partition(":")
    assert (module, function) == ("stages.serving.cli", "main") and callable(getattr(cli, function))


@pytest.mark.slow
def test_a_real_student_folder_tags_like_its_predict(trained_student, tmp_path, capsys):
    """Any saved or exported student: the fp32 folder and the int8 export, each as the student's own predict."""
    from stages.students.registry import load

    name, _, _, models = trained_student
    source = tmp_path / "feed.jsonl"
    source.write_text("".join(json.dumps({"text": text}) + "\n" for text in PROBE))
    for folder in (models / name, models / f"{name}_export"):
        records, _ = run(["tag", str(folder), str(source), "--batch-size", "2"], capsys)
        expected = load(folder)(PROBE, 2)
        assert [[(s["start"], s["end"], s["text"]) for s in r["spans"]] for r in records] == [
            [(s["start"], s["end"], s["text"]) for s in spans] for spans in expected
        ]
        assert [s["score"] for r in records for s in r["spans"]] == pytest.approx(
            [s["score"] for spans in expected for s in spans], abs=1e-4
        )
    assert any(r["spans"] for r in records), "the tiny student finds the company of its probe"
