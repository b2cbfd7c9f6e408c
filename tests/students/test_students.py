"""Real tiny training runs of both students on hand-written headlines (tests/data/headlines.jsonl): a few dozen
optimizer steps, enough to predict companies, so reload, export and the benchmark are checked on real spans."""

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from stages.core.errors import PipelineError
from stages.core.metrics import entity_scores
from stages.core.params import load_params
from stages.labels.records import human_or_all, unreviewed_rule
from stages.serving.package import servable_folder
from stages.students import gliner as gliner_student
from stages.students import spanmarker as spanmarker_student
from stages.students.config import FinetuneGlinerParams
from stages.students.finetune import run_params
from stages.students.registry import STUDENTS, training_params
from stages.students.runtime import EXPORT_FILE
from stages.students.settings import SETTINGS_FILE
from tests.helpers import PROBE, ROOT, STUDENT_NAMES


def test_the_trained_students_are_the_registered_ones():
    assert STUDENT_NAMES == tuple(sorted(STUDENTS))


@pytest.mark.slow
def test_tiny_training_keeps_the_best_epoch_that_predicts_and_reloads_in_a_fresh_process(
    trained_student, labelled_headlines, tmp_path
):
    name, training, result, models = trained_student
    out = Path(shutil.copytree(models / name, tmp_path / "model"))

    losses = [h["train_loss"] for h in result.history]
    assert len(losses) == training.epochs and losses[-1] < losses[0]
    assert result.best_valid_f1 == max(h["valid_f1"] for h in result.history) > 0
    assert (out / SETTINGS_FILE).exists() and not (models / f"{name}.partial").exists()
    assert not (out / "README.md").exists()  # SpanMarker's own card differs from run to run (the export writes one)
    for path in out.rglob("*.json"):  # a saved model must not point at this machine's files
        assert sys.prefix not in path.read_text(), f"{path} names a path of this machine"

    texts = PROBE + [r["text"] for r in labelled_headlines]
    before = STUDENTS[name].load(out)(texts)
    seen = entity_scores([r["spans"] for r in labelled_headlines[:20]], before[2:22])
    assert seen["f1"] >= 0.3, f"a trained student must find companies in its training headlines: {seen}"

    moved = shutil.move(out, tmp_path / "elsewhere")  # as if pulled to another machine
    code = (
        f"import json, sys; from pathlib import Path; from stages.students.registry import STUDENTS; "
        f"predict = STUDENTS[{name!r}].load(Path(sys.argv[1])); print(json.dumps(predict(json.loads(sys.argv[2]))))"
    )
    run = subprocess.run(
        [sys.executable, "-c", code, str(moved), json.dumps(texts)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert json.loads(run.stdout.strip().splitlines()[-1]) == before, "a moved model must predict what it did before"


@pytest.mark.slow
def test_export_is_byte_identical_loads_with_the_same_call_and_predicts_like_fp32(
    trained_student, labelled_headlines, tmp_path
):
    name, _, _, models = trained_student
    student, trained, exported_dir = STUDENTS[name], models / name, models / f"{name}_export"
    servable_folder(student, trained, tmp_path / "again")
    files = sorted(p.relative_to(exported_dir) for p in exported_dir.rglob("*") if p.is_file())
    assert EXPORT_FILE in {str(f) for f in files} and not any(f.suffix in (".safetensors", ".bin") for f in files)
    assert sorted(p.relative_to(tmp_path / "again") for p in (tmp_path / "again").rglob("*") if p.is_file()) == files
    for file in files:
        assert (exported_dir / file).read_bytes() == (tmp_path / "again" / file).read_bytes(), f"{file} differs"
        if file.suffix == ".json":
            assert sys.prefix not in (exported_dir / file).read_text(), f"{file} names a path of this machine"
    assert (exported_dir / EXPORT_FILE).stat().st_size < 0.5 * sum(
        p.stat().st_size for p in trained.glob("*.*") if p.suffix in (".safetensors", ".bin")
    )

    texts = PROBE + [r["text"] for r in labelled_headlines]
    fp32 = student.load(trained)
    moved = shutil.move(tmp_path / "again", tmp_path / "served")  # the export needs nothing but its own directory
    exported = student.load(Path(moved))  # the same one call as a saved model
    expected, got = fp32(texts), exported(texts)
    assert sum(map(len, expected)) >= 15, "the fp32 student must find companies for the comparison to mean anything"
    agreement = entity_scores(expected, got)  # the export scored against its own fp32 model
    assert agreement["f1"] >= 0.85, agreement  # int8 moves a few borderline spans
    # int8 activations are scaled per batch, so a headline's batchmates may move a borderline span: agree, not equal
    assert entity_scores(got, exported(texts, batch_size=4))["f1"] >= 0.85
    assert exported([]) == []


@pytest.mark.slow
def test_student_inference_benchmark_runs_at_its_tiny_size(trained_student):
    name, _, _, models = trained_student
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.student_inference",
            "--tiny",
            "--students",
            name,
            "--models",
            str(models),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    out = json.loads(run.stdout.strip().splitlines()[-1])
    assert (out["headlines"], out["f1_headlines"]) == (16, 16) and f"{name}_export_s" not in out  # export found
    assert min(out[f"{name}{variant}_headlines_per_s"] for variant in ("", "_int8", "_export")) > 0
    assert 0 <= out[f"{name}_f1"] <= 1 and out[f"{name}_train_steps_per_s"] > 0


def test_unreachable_hub_base_model_names_the_param_to_change():
    with pytest.raises(PipelineError, match=r"finetune_gliner.recipe: offline_minilm"):
        gliner_student.build_model("EmergentMethods/gliner_medium_news-v2.1", 8)
    hub = training_params("spanmarker", ROOT / "params.yaml").model_copy(
        update={"base_model": "tomaarsen/span-marker-bert-base-orgs", "revision": "main"}
    )
    with pytest.raises(
        PipelineError,
        match=r"(?s)cannot load base model 'tomaarsen/span-marker-bert-base-orgs'.*"
        r"finetune_spanmarker.recipe",
    ):
        spanmarker_student.build_model(hub)


def test_unreviewed_headlines_train_by_the_rule_accepted_ones_always_and_humans_pick_the_epoch():
    records = [
        {"id": "a", "label_source": "human"},
        {"id": "b", "label_source": "llm"},
        {"id": "c", "label_source": "accepted"},
    ]
    assert unreviewed_rule(records, "keep") == records
    assert unreviewed_rule(records, "drop") == unreviewed_rule(records, "pretrain") == [records[0], records[2]]
    # an auto-accepted label trains, but only a human one picks the epoch
    assert human_or_all(records) == records[:1] and human_or_all(records[1:]) == records[1:]


def test_the_run_params_are_the_section_with_its_chosen_recipe_flat():
    section = load_params(FinetuneGlinerParams, ROOT / "params.yaml")
    assert run_params(section) == section.training().model_dump() | {"recipe": section.recipe}  # no `recipes`


def test_model_card_renders_every_section_with_numbers_in_place():
    """The whole card against a committed copy in which every number is a wildcard (as SpanMarker tests cards)."""
    from stages.students.card import CardData, render
    from stages.students.settings import TrainingSummary

    card = render(
        CardData(
            TrainingSummary(
                student="gliner",
                title="GLiNER company-name student",
                base_model="local-minilm",
                revision=None,
                entity_label="company",
                epochs=6,
                sizes={"train": 280, "train_human": 280, "valid": 90, "valid_human": 90},
                best={"epoch": 5, "valid_precision": 0.81, "valid_recall": 0.77, "valid_f1": 0.79},
                params={"learning_rate": 0.0001, "unreviewed": "keep"},
                examples=[{"text": "Visa Rallies", "spans": [{"start": 0, "end": 4, "text": "Visa"}]}],
            ),
            export_scores={"precision": 0.8, "recall": 0.75, "f1": 0.7742},
            securities={
                "files": ["data/master/securities.csv", "data/master/supplement.csv"],
                "accepted_aliases": "data/master/accepted_aliases.csv",
                "rows": 1807,
                "symbols": 1805,
                "securities": 1795,
                "name_forms": 1809,
                "dated_from": "2017-10-16",
                "dated_to": "2025-01-20",
            },
        )
    )
    expected = (ROOT / "tests/data/model_card.md").read_text()
    assert re.sub(r"\d+(\.\d+)*", "N", card) == expected
    assert "Best epoch 5 of 6: precision 0.8100, recall" in card and "0.0001" in card
    assert "its dated rows run from 2017-10-16 to 2025-01-20" in card


def test_spanmarker_trains_a_multi_word_company_as_one_entity():
    """SpanMarker's config.label2id is the reduced {O, company}; a model built with B-/I- labels reads training
    tags by its schemed ids, so tagging with the reduced ids would train "Bharat Forge" as two entities."""
    from span_marker.label_normalizer import AutoLabelNormalizer

    model = spanmarker_student.build_model(training_params("spanmarker", ROOT / "params.yaml"))
    text = "Bharat Forge looks rich, says Sudip"
    record = {"text": text, "spans": [{"start": 0, "end": 12, "text": "Bharat Forge"}]}
    tokens, tags = spanmarker_student.tag_ids(record, spanmarker_student.training_label_ids(model.config), "company")
    entities = AutoLabelNormalizer.from_config(model.config)([tokens], [tags])["ner_tags"][0]
    assert [(start, end) for _, start, end in entities] == [(0, 2)]


INVISIBLE = ("\u200b", "\ufeff", "\u00ad", "\u2063", "\x00")  # characters a subword tokenizer turns into nothing


def without_invisible(text: str) -> str:
    return " ".join("".join(c for c in text if c not in INVISIBLE).split())


def test_spanmarker_leaves_out_words_its_tokenizer_turns_into_no_subword():
    tokenizer = spanmarker_student.build_model(training_params("spanmarker", ROOT / "params.yaml")).tokenizer
    text = "Apple \u200b Shares \ufeff Rise \u00ad As \u2063 Visa\u200bCorp \x00 Gains $ 5 %"
    words = [text[s:e] for s, e in spanmarker_student.visible_words(text, tokenizer)]
    assert words == ["Apple", "Shares", "Rise", "As", "Visa", "Corp", "Gains", "$", "5", "%"]


@pytest.mark.slow
def test_invisible_characters_between_words_change_no_prediction(trained_student, labelled_headlines):
    """A zero-width space, BOM or soft hyphen standing as its own token crashed the SpanMarker student in tag,
    evaluate and the server; every student now finds what it finds in the same headline without them."""
    name, _, _, models = trained_student
    texts = [r["text"] for r in labelled_headlines]
    marked = [f" {INVISIBLE[n % len(INVISIBLE)]} ".join(text.split()) for n, text in enumerate(texts)]
    for folder in (models / name, models / f"{name}_export"):
        predict = STUDENTS[name].load(folder)
        clean, got = predict(texts), predict(marked)
        assert sum(map(len, clean)) >= 10
        if name == "spanmarker":  # the same subwords reach the encoder: the same spans
            assert [[without_invisible(s["text"]) for s in spans] for spans in got] == [
                [s["text"] for s in spans] for spans in clean
            ]
