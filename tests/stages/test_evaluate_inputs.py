"""evaluate's inputs that cannot be wrong: bounded params (and tag's batch size, bounded by what a served student
takes), and an extra test set that scores each headline once."""

import json
import logging

import pytest
import yaml

from stages import evaluate
from stages.core.errors import ParamsError, PipelineError
from stages.core.params import validate
from stages.core.stage_params import EvaluateParams, TagParams
from tests.helpers import ROOT

SHIPPED = yaml.safe_load((ROOT / "params.yaml").read_text())


@pytest.mark.parametrize(
    ("model", "key", "value", "message"),
    [
        (
            EvaluateParams,
            ("bootstrap", "resamples"),
            10_001,
            r"evaluate.bootstrap.resamples: 10001 is not allowed: at most 10,000: each resample holds every test "
            r"headline's counts in memory",
        ),
        (EvaluateParams, ("batch_size",), 257, r"evaluate.batch_size: 257 is not allowed: at most 256: the students"),
        (
            TagParams,
            ("batch_size",),
            257,
            r"tag.batch_size: 257 is not allowed: at most 256: a served student refuses a batch larger than that",
        ),
    ],
)
def test_batch_sizes_and_resamples_have_an_upper_bound_that_says_why(model, key, value, message):
    section = json.loads(json.dumps(SHIPPED[model.SECTION]))
    node = section
    for part in key[:-1]:
        node = node[part]
    node[key[-1]] = value
    with pytest.raises(ParamsError, match=message):
        validate(model, section)
    node[key[-1]] = value - 1  # the bound itself is allowed
    validate(model, section)


def extra_scores(tmp_path, rows):
    test_sets = tmp_path / "test_sets"
    test_sets.mkdir()
    path = test_sets / "bench.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    params = validate(EvaluateParams, SHIPPED["evaluate"] | {"extra_test_sets": [str(path)]})

    def predict(texts, batch_size):
        return [[{"start": 0, "end": 4}] if text.startswith("Visa") else [] for text in texts]

    return evaluate.extra_test_set_scores(params, test_sets, {"fake": predict})["bench.jsonl"]


def test_an_extra_test_set_repeating_a_headline_with_other_spans_stops_naming_lines_and_headline(tmp_path):
    rows = [{"text": "Visa Rallies", "spans": [{"start": 0, "end": 4}]}, {"text": "Visa Rallies", "spans": []}]
    with pytest.raises(PipelineError, match=r"bench.jsonl:2: headline 'Visa Rallies' has spans none here but "):
        extra_scores(tmp_path, rows)


def test_an_extra_test_set_repeating_a_headline_with_the_same_spans_scores_it_once(tmp_path, caplog):
    rows = [{"text": "Visa Rallies", "spans": [{"start": 0, "end": 4}]}, {"text": "Gold Rises", "spans": []}] * 2
    with caplog.at_level(logging.INFO):
        scores = extra_scores(tmp_path, rows)
    assert scores["records"] == 2 and scores["repeated"] == 2
    assert "2 line(s) repeat a headline with the same spans, scored once" in caplog.text
