"""Params that cannot be wrong: every probe a hostile user tried gives one line naming the key, value and rule."""

import copy
import subprocess
import sys

import pytest
import yaml

from scripts.apply_profile import MODELS  # every params section's model, as the profile writer validates them
from stages.core.errors import PipelineError
from stages.core.params import validate
from tests.helpers import ROOT

SHIPPED = yaml.safe_load((ROOT / "params.yaml").read_text())

# (dotted key to set, value, expected message after "params.yaml: ")
PROBES = [
    ("llm_label.limit", -5, r"llm_label.limit: -5 is not allowed: Input should be greater than 0"),
    ("llm_label.limit", "abc", r"llm_label.limit: 'abc' is not allowed: Input should be a valid integer"),
    ("llm_label.concurrency", -3, r"llm_label.concurrency: -3 is not allowed: Input should be a valid dictionary"),
    (
        "llm_label.concurrency",
        {"min": -3, "start": 1, "max": 1},
        r"llm_label.concurrency.min: -3 is not allowed: Input should be greater than or equal to 1",
    ),
    ("llm_label.concurrency", {"min": 4, "start": 2, "max": 8}, r"llm_label.concurrency: .* needs min <= start <= max"),
    (
        "llm_label.max_attempts",
        0,
        r"llm_label.max_attempts: 0 is not allowed: Input should be greater than or equal to 1",
    ),
    ("llm_label.self_consistency.samples", 0, r"llm_label.self_consistency.samples: 0 is not allowed"),
    (
        "llm_label.occurrences",
        "firts",
        r"llm_label.occurrences: 'firts' is not allowed: Input should be 'all' or 'first'",
    ),
    ("llm_label.timeout_s", -1, r"llm_label.timeout_s: -1 is not allowed: Input should be greater than 0"),
    ("llm_label.endpoint.response_format", "vllm", r"llm_label.endpoint.response_format: 'vllm' is not allowed"),
    (
        "llm_label.fail_on_request_errors",
        "maybe",
        r"llm_label.fail_on_request_errors: 'maybe' is not allowed: Input should be a valid boolean",
    ),
    ("fetch.on_bad_row", "dorp", r"fetch.on_bad_row: 'dorp' is not allowed: Input should be 'error' or 'drop'"),
    (
        "fetch.date_range.start",
        "2015-01-05xyz",
        r"fetch.date_range.start: '2015-01-05xyz' is not allowed: expected a real date",
    ),
    ("fetch.date_range.end", "2015-02-30", r"fetch.date_range.end: '2015-02-30' is not allowed: expected a real date"),
    ("fetch.kind", "hub", r"fetch.kind: 'hub' is not allowed: Input should be 'file' or 'hf_dataset'"),
    ("fetch.filters", [{"column": "Url"}], r"fetch.filters.0: .* needs exactly one of equals / contains / in"),
    ("fetch.columns", {"text": "title"}, r"fetch.columns: .* needs both text and date"),
    (
        "cluster_sample.threshold",
        150,
        r"cluster_sample.threshold: 150 is not allowed: Input should be less than or equal to 100",
    ),
    (
        "cluster_sample.scorer",
        "ratoi",
        r"cluster_sample.scorer: 'ratoi' is not allowed: Input should be 'ratio', 'token_sort_ratio' or 'WRatio'",
    ),
    (
        "cluster_sample.cluster_fraction",
        1.5,
        r"cluster_sample.cluster_fraction: 1.5 is not allowed: Input should be less than or equal to 1",
    ),
    ("cluster_sample.seed", "abc", r"cluster_sample.seed: 'abc' is not allowed: Input should be a valid integer"),
    (
        "split.ranges.test.start",
        "2019-13-01",
        r"split.ranges.test.start: '2019-13-01' is not allowed: expected a real date",
    ),
    (
        "split.ranges.valid",
        {"start": "2018-01-01", "end": "2017-01-01"},
        r"split.ranges.valid: .* start 2018-01-01 is after end 2017-01-01",
    ),
    (
        "argilla_review.server",
        "argila",
        r"argilla_review.server: 'argila' is not allowed: Input should be 'none' or 'argilla'",
    ),
    ("argilla_review.require_full_review", ["tests"], r"argilla_review.require_full_review.0: 'tests' is not allowed"),
    (
        "argilla_review.train_reviewed_fraction",
        -0.1,
        r"argilla_review.train_reviewed_fraction: -0.1 is not allowed: Input should be greater than or equal to 0",
    ),
    (
        "finetune_gliner.recipe",
        "casestudy",
        r"finetune_gliner: .* recipe 'casestudy' is not one of \['case_study', 'offline_minilm'\]",
    ),
    (
        "finetune_gliner.unreviewed",
        "weight",
        r"finetune_gliner.unreviewed: 'weight' is not allowed: Input should be 'keep', 'drop' or 'pretrain'",
    ),
    (
        "finetune_gliner.device",
        "gpu",
        r"finetune_gliner.device: 'gpu' is not allowed: Input should be 'auto', 'cpu' or 'cuda'",
    ),
    (
        "finetune_gliner.recipes.offline_minilm.epochs",
        0,
        r"finetune_gliner.recipes.offline_minilm.epochs: 0 is not allowed: Input should be greater than 0",
    ),
    ("finetune_spanmarker.threshold", 0.5, r"finetune_spanmarker.threshold: unknown key"),
    ("finetune_gliner.threshold", 0.5, r"finetune_gliner.threshold: unknown key"),  # it is predict.gliner.threshold
    (
        "finetune_gliner.min_valid_f1",
        1.5,
        r"finetune_gliner.min_valid_f1: 1.5 is not allowed: Input should be less than or equal to 1",
    ),
    ("predict.gliner.threshold", 1.0, r"predict.gliner.threshold: 1.0 is not allowed: Input should be less than 1"),
    ("predict.spanmarker.threshold", 0.5, r"predict.spanmarker.threshold: unknown key"),  # SpanMarker has none
    (
        "evaluate.bootstrap.resamples",
        -1,
        r"evaluate.bootstrap.resamples: -1 is not allowed: Input should be greater than 0",
    ),
    (
        "llm_label.cost.usd_per_hour",
        float("inf"),
        r"llm_label.cost.usd_per_hour: inf is not allowed: Input should be a finite number",
    ),
    ("llm_label.timeout_s", float("inf"), r"llm_label.timeout_s: inf is not allowed: Input should be a finite number"),
    (
        "llm_label.generation.temperature",
        float("nan"),
        r"llm_label.generation.temperature: nan is not allowed: Input should be a finite number",
    ),
    ("evaluate.cpu_usd_per_hour", float("inf"), r"evaluate.cpu_usd_per_hour: inf is not allowed"),
    (
        "finetune_gliner.recipes.offline_minilm.learning_rate",
        float("inf"),
        r"learning_rate: inf is not allowed: Input should be a finite number",
    ),
    (
        "llm_label.endpoint.base_url",
        "htp:/oops",
        r"llm_label.endpoint.base_url: 'htp:/oops' is not allowed: expected 'local' or an http\(s\) URL",
    ),
    ("llm_label.endpoint.base_url", "gpu-box:8000", r"llm_label.endpoint.base_url: 'gpu-box:8000' is not allowed"),
]
TYPOS = [
    ("llm_label", "concurrency", "concurency"),
    ("fetch", "on_bad_row", "on_bad_rows"),
    ("cluster_sample", "threshold", "treshold"),
    ("argilla_review", "label_files", "label_file"),
    ("finetune_spanmarker", "patience", "patiance"),
    ("evaluate", "batch_size", "batchsize"),
]


def with_value(section: str, dotted: str, value):
    params = copy.deepcopy(SHIPPED[section])
    *parents, last = dotted.split(".")
    target = params
    for part in parents:
        target = target[part]
    target[last] = value
    return params


@pytest.mark.parametrize("section", sorted(MODELS))
def test_the_shipped_params_are_valid(section):
    validate(MODELS[section], SHIPPED[section])


@pytest.mark.parametrize("key, value, message", PROBES, ids=[p[0] + "=" + str(p[1])[:20] for p in PROBES])
def test_a_bad_value_names_key_value_and_what_is_allowed(key, value, message):
    section, dotted = key.split(".", 1)
    with pytest.raises(PipelineError) as error:
        validate(MODELS[section], with_value(section, dotted, value))
    assert len(str(error.value).splitlines()) == 1, str(error.value)
    assert str(error.value).startswith("params.yaml: ")
    assert __import__("re").search(message, str(error.value)), str(error.value)


@pytest.mark.parametrize("section, real, typo", TYPOS)
def test_a_typo_is_an_unknown_key_and_the_real_key_is_missing(section, real, typo):
    params = copy.deepcopy(SHIPPED[section])
    params[typo] = params.pop(real)
    with pytest.raises(PipelineError) as error:
        validate(MODELS[section], params)
    lines = str(error.value).splitlines()
    assert f"params.yaml: {section}.{typo}: unknown key" in str(error.value)
    assert f"params.yaml: {section}.{real}: missing" in str(error.value) and len(lines) == 2


def test_a_stage_stops_on_bad_params_before_any_work(tmp_path):
    params = copy.deepcopy(SHIPPED)
    params["fetch"]["on_bad_row"] = "dorp"
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    run = subprocess.run(
        [sys.executable, "-m", "stages.fetch", "--out", "out.parquet", "--metrics", "m.json"],
        cwd=tmp_path,
        env={"PYTHONPATH": str(ROOT), "PATH": ""},
        capture_output=True,
        text=True,
    )
    assert run.returncode == 1 and run.stderr.strip().splitlines()[-1].startswith(
        "params.yaml: fetch.on_bad_row: 'dorp'"
    )
    assert not (tmp_path / "out.parquet").exists() and not (tmp_path / "m.json").exists()


def test_every_section_of_the_shipped_params_has_a_model():
    assert set(MODELS) == set(SHIPPED)


def test_stages_get_the_validated_model_and_a_recipe_comes_out_flat():
    from stages.core.params import load_params
    from stages.students.config import FinetuneGlinerParams, FinetuneSpanMarkerParams

    gliner = load_params(FinetuneGlinerParams, ROOT / "params.yaml")
    assert isinstance(gliner, FinetuneGlinerParams)
    case_study = gliner.model_copy(update={"recipe": "case_study"}).training()
    assert case_study.base_model == SHIPPED["finetune_gliner"]["recipes"]["case_study"]["base_model"]
    assert case_study.epochs == SHIPPED["finetune_gliner"]["recipes"]["case_study"]["epochs"]
    assert case_study.min_valid_f1 == SHIPPED["finetune_gliner"]["min_valid_f1"]  # a shared key
    spanmarker = load_params(FinetuneSpanMarkerParams, ROOT / "params.yaml").training()
    assert spanmarker.entity_label == SHIPPED["finetune_spanmarker"]["recipes"]["offline_minilm"]["entity_label"]
