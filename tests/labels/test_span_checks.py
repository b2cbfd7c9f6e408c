"""Each kind of bad span says what it is (empty, reversed, outside the text), and an extra test set names each
headline once: a repeat with the same spans is scored once, one with other spans is an error."""

import json

import pytest

from stages.core.errors import InputError
from stages.core.params import load_params
from stages.core.stage_params import EvaluateParams
from stages.labels.files import read_label_file
from stages.labels.resolve import span_problem, standalone
from tests.helpers import ROOT

TEXT = "Visa Rallies"  # 12 characters


@pytest.mark.parametrize(
    ("start", "end", "problem"),
    [
        (5, 5, "span [5, 5) is empty"),
        (0, 0, "span [0, 0) is empty"),
        (12, 12, "span [12, 12) is empty"),
        (7, 5, "span [7, 5) ends before it starts"),
        (-3, -5, "span [-3, -5) ends before it starts"),
        (-1, 4, "span [-1, 4) is outside the text (12 characters)"),
        (5, 40, "span [5, 40) is outside the text (12 characters)"),
        (20, 30, "span [20, 30) is outside the text (12 characters)"),
        (0, 4, None),
        (0, 12, None),
    ],
)
def test_each_bad_span_is_named_for_what_is_wrong(start, end, problem):
    assert span_problem(start, end, len(TEXT)) == problem


def test_a_zero_length_span_in_a_label_file_is_reported_as_empty(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text(json.dumps({"text": TEXT, "spans": [{"start": 5, "end": 5}]}) + "\n")
    with pytest.raises(InputError, match=r"t.jsonl:1: span \[5, 5\) is empty$"):
        standalone(read_label_file(path, load_params(EvaluateParams, ROOT / "params.yaml")))


def read_test_set(tmp_path, rows):
    path = tmp_path / "t.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return standalone(read_label_file(path, load_params(EvaluateParams, ROOT / "params.yaml")))


def test_a_test_set_headline_repeated_with_other_spans_names_both_lines_and_the_headline(tmp_path):
    rows = [
        {"text": TEXT, "spans": [{"start": 0, "end": 4}]},
        {"text": "Gold Rises", "spans": []},
        {"text": TEXT, "spans": []},
    ]
    with pytest.raises(
        InputError,
        match=r"t.jsonl:3: headline 'Visa Rallies' has spans none here but \[0, 4\) at .*t.jsonl:1; "
        r"a test set labels each headline once$",
    ):
        read_test_set(tmp_path, rows)


def test_a_test_set_headline_repeated_with_the_same_spans_is_scored_once(tmp_path):
    rows = [
        {"text": TEXT, "spans": [{"start": 0, "end": 4}]},
        {"text": "Gold Rises", "spans": []},
        {"text": TEXT, "spans": [{"start": 0, "end": 4, "text": "Visa"}]},
    ]
    test_set = read_test_set(tmp_path, rows)
    assert [r["text"] for r in test_set.records] == [TEXT, "Gold Rises"]
    assert [where.rsplit("/", 1)[-1] for where in test_set.repeats] == ["t.jsonl:3"]
