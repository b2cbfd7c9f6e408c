"""Human labels from files: every format reads to the same spans, and every bad input stops with file and line."""

import datetime as dt
import json

import polars as pl
import pytest

from stages.core.errors import PipelineError
from stages.core.params import load_params, validate
from stages.core.stage_params import ReviewParams
from stages.labels.files import FileLabel, accepted, read_label_file, require_inside
from stages.labels.resolve import candidates, resolve, standalone
from tests.helpers import ROOT

HEADLINES = [
    {"id": "h1", "text": "Apple (AAPL) Beats, Tesla Slips", "date": dt.date(2012, 3, 1)},
    {"id": "h2", "text": "Gold Rises As Dollar Falls", "date": dt.date(2013, 4, 2)},
    {"id": "h3", "text": "Visa Rallies", "date": dt.date(2014, 5, 3)},
    {"id": "h4", "text": "Visa Rallies", "date": dt.date(2019, 5, 3)},
]
APPLE_TESLA = [
    {"start": 0, "end": 5, "text": "Apple"},
    {"start": 7, "end": 11, "text": "AAPL"},
    {"start": 20, "end": 25, "text": "Tesla"},
]


def write_jsonl(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def types(entity_labels=("company",), ignored_labels=()) -> ReviewParams:
    """The shipped argilla_review section with other span types."""
    return load_params(ReviewParams, ROOT / "params.yaml").model_copy(
        update={"entity_labels": list(entity_labels), "ignored_labels": list(ignored_labels)}
    )


def labels_from(path, headlines=HEADLINES, **span_types):
    return resolve(read_label_file(path, types(**span_types)), headlines).labels


def test_jsonl_by_id_by_text_and_by_text_and_date(tmp_path):
    path = write_jsonl(
        tmp_path / "l.jsonl",
        [
            {
                "id": "h1",
                "spans": [
                    {"start": 0, "end": 5, "text": "Apple"},
                    {"start": 7, "end": 11},
                    {"start": 20, "end": 25, "label": "company"},
                    {"start": 13, "end": 18, "label": "verb"},
                ],
            },
            {"text": "Gold Rises As Dollar Falls", "spans": []},
            {"text": "Visa Rallies", "date": "2019-05-03", "spans": [{"start": 0, "end": 4}]},
        ],
    )
    labels = labels_from(path, ignored_labels=["Verb"])
    assert labels["h1"]["spans"] == APPLE_TESLA  # the 'verb' span is a type the params leave out
    assert labels["h2"]["spans"] == [] and labels["h2"]["where"] == f"{path}:2"
    assert set(labels) == {"h1", "h2", "h4"}  # the date picked one of the two 'Visa Rallies'


def test_text_without_date_labels_every_headline_with_that_text(tmp_path):
    labels = labels_from(
        write_jsonl(tmp_path / "l.jsonl", [{"text": "Visa Rallies", "spans": [{"start": 0, "end": 4}]}])
    )
    assert set(labels) == {"h3", "h4"}


def test_conll_iob2_with_and_without_ids(tmp_path):
    path = tmp_path / "l.conll"
    path.write_text(
        "-DOCSTART- O\n\n# id = h1\nApple B-company\n( O\nAAPL B-company\n) O\nBeats O\n, O\n"
        "Tesla B-COMPANY\nSlips O\n\nVisa B-company\nRallies O\n\nGold O\nRises B-PER\nAs I-PER\nDollar O\nFalls O\n"
    )
    labels = labels_from(path, HEADLINES[:3], ignored_labels=["PER"])
    assert labels["h1"]["spans"] == APPLE_TESLA
    assert labels["h3"]["spans"] == [{"start": 0, "end": 4, "text": "Visa"}]
    assert labels["h2"]["spans"] == []  # PER is not a company type


UNKNOWN_TYPES = {  # file name, its text, where the error points, the label it names
    "another type": (
        "l.jsonl",
        '{"id": "h2", "spans": []}\n{"id": "h1", "spans": [{"start": 0, "end": 5, "label": "ORG"}]}\n',
        "l.jsonl:2",
        "ORG",
    ),
    "a typo": (
        "l.jsonl",
        '{"id": "h2", "spans": []}\n{"id": "h1", "spans": [{"start": 0, "end": 5, "label": "compnay"}]}\n',
        "l.jsonl:2",
        "compnay",
    ),
    "a CoNLL type": (
        "l.conll",
        "# id = h2\nGold O\nRises O\nAs O\nDollar O\nFalls O\n\n# id = h3\nVisa B-ORG\nRallies O\n",
        "l.conll:9",
        "ORG",
    ),
}


@pytest.mark.parametrize("case", sorted(UNKNOWN_TYPES))
def test_a_span_of_an_unknown_type_stops_with_file_line_and_label(case, tmp_path):
    """Left out silently, it would make the headline a human 'no company'."""
    name, text, where, label = UNKNOWN_TYPES[case]
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(
        PipelineError,
        match=rf"{where}: span label '{label}' is not a known type: add it to "
        rf"argilla_review.entity_labels .* or to argilla_review.ignored_labels",
    ):
        labels_from(path)


def test_params_map_a_type_to_company_or_leave_it_out_but_not_both(tmp_path):
    path = write_jsonl(
        tmp_path / "l.jsonl",
        [{"id": "h1", "spans": [{"start": 0, "end": 5, "label": "ORG"}, {"start": 20, "end": 25, "label": "PER"}]}],
    )
    assert labels_from(path, entity_labels=["company", "org"], ignored_labels=["per"])["h1"]["spans"] == [
        {"start": 0, "end": 5, "text": "Apple"}
    ]
    section = load_params(ReviewParams, ROOT / "params.yaml").model_dump() | {"ignored_labels": ["COMPANY"]}
    with pytest.raises(PipelineError, match=r"\['company'\] is in both entity_labels and ignored_labels"):
        validate(ReviewParams, section)


def test_conll_found_by_id_must_cover_the_whole_headline(tmp_path):
    path = tmp_path / "l.conll"
    path.write_text("# id = h2\nGold B-company\nRises O\n")
    with pytest.raises(
        PipelineError,
        match=r"l.conll:3: the tokens end at character 10 of the headline "
        r"'Gold Rises As Dollar Falls': 'As Dollar Falls' is missing",
    ):
        labels_from(path)


def test_prodigy_rejected_and_ignored_examples_are_no_human_label(tmp_path):
    from stages.argilla_review import file_labels_by_split

    path = write_jsonl(
        tmp_path / "l.jsonl",
        [
            {"id": "h1", "spans": [{"start": 0, "end": 5}], "answer": "accept"},
            {"id": "h2", "spans": [{"start": 0, "end": 4}], "answer": "reject"},
            {"id": "h3", "spans": [{"start": 0, "end": 4}], "answer": "ignore"},
            {"text": "Visa Rallies", "date": "2019-05-03", "spans": [{"start": 0, "end": 4}]},
        ],
    )
    assert set(labels_from(path)) == {"h1", "h4"}
    assert len(accepted(read_label_file(path, types()))) == 2
    assert (
        standalone(
            read_label_file(
                write_jsonl(tmp_path / "t.jsonl", [{"text": "Visa Rallies", "spans": [], "answer": "reject"}]), types()
            )
        ).records
        == []
    )
    frame = pl.DataFrame(HEADLINES)
    params = types().model_copy(update={"label_files": [str(path)], "train_reviewed_fraction": 1.0})
    per_split, counts = file_labels_by_split(
        params, tmp_path, frame, {"train": frame, "valid": frame[:0], "test": frame[:0]}
    )
    assert set(per_split["train"]) == {"h1", "h4"}
    assert counts["labels_per_file"] == {str(path): 2} and counts["rejected_per_file"] == {str(path): 2}


def test_exported_dataset_directory_reads_only_human_labels(tmp_path):
    from datasets import Dataset, DatasetDict

    spans = [APPLE_TESLA, [{"start": 0, "end": 4, "text": "Gold"}]]
    DatasetDict(
        {
            "train": Dataset.from_list(
                [
                    {
                        "id": "h1",
                        "text": HEADLINES[0]["text"],
                        "date": "2012-03-01",
                        "spans": spans[0],
                        "label_source": "human",
                    },
                    {
                        "id": "h2",
                        "text": HEADLINES[1]["text"],
                        "date": "2013-04-02",
                        "spans": spans[1],
                        "label_source": "llm",
                    },
                ]
            )
        }
    ).save_to_disk(str(tmp_path / "export"))
    labels = labels_from(tmp_path / "export")
    assert labels == {"h1": {"spans": APPLE_TESLA, "where": f"{tmp_path / 'export'} [train] row 0"}}


def test_the_stage_reads_its_own_export_back(tmp_path):
    """What `argilla_review --export` writes is a label file argilla_review accepts."""
    from stages.argilla_review import export
    from stages.core.schema import SPANS

    reviewed = tmp_path / "reviewed"
    reviewed.mkdir()
    for split in ("train", "valid", "test"):
        pl.DataFrame(
            {
                "id": ["h1"],
                "text": [HEADLINES[0]["text"]],
                "date": [dt.date(2012, 3, 1)],
                "label_spans": [APPLE_TESLA],
                "teacher_spans": [[]],
                "reviewed": [True],
                "label_source": ["human"],
            },
            schema_overrides={"label_spans": SPANS, "teacher_spans": SPANS},
        ).write_parquet(reviewed / f"{split}.parquet")
    export(reviewed, str(tmp_path / "export"), None)
    assert labels_from(tmp_path / "export")["h1"]["spans"] == APPLE_TESLA


BAD_JSONL = {
    "offsets outside the text": (
        {"id": "h3", "spans": [{"start": 5, "end": 40}]},
        r"l.jsonl:2: span \[5, 40\) is outside the text \(12 characters\)",
    ),
    "span text that does not match": (
        {"id": "h3", "spans": [{"start": 0, "end": 4, "text": "Visa Inc"}]},
        r"l.jsonl:2: span text 'Visa Inc' does not match 'Visa' at \[0, 4\)",
    ),
    "overlapping spans": (
        {"id": "h1", "spans": [{"start": 0, "end": 5}, {"start": 3, "end": 11}]},
        r"l.jsonl:2: spans \[0, 5\) and \[3, 11\) overlap",
    ),
    "id and text disagree": (
        {"id": "h2", "text": "Visa Rallies", "spans": []},
        r"l.jsonl:2: text 'Visa Rallies' is not the text of headline 'h2'",
    ),
    "malformed line": ('{"id": "h3", "spans": [', r"l.jsonl:2: malformed line: Expecting value"),
    "no key": ({"spans": []}, r"l.jsonl:2: malformed line: needs 'id' or 'text'"),
    "no spans": ({"id": "h3"}, r"l.jsonl:2: malformed line: needs 'spans'"),
    "malformed span": (
        {"id": "h3", "spans": [{"start": "0", "end": 4}]},
        r"l.jsonl:2: malformed span .* integer 'start' and 'end'",
    ),
    "contradicting label": (
        {"text": "Gold Rises As Dollar Falls", "spans": [{"start": 0, "end": 4}]},
        r"l.jsonl:2: contradicts the label of the same headline at .*l.jsonl:1",
    ),
    "unknown answer": (
        {"id": "h3", "spans": [], "answer": "accepted"},
        r"l.jsonl:2: answer 'accepted' is not one of accept, reject, ignore",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_JSONL))
def test_bad_jsonl_line_stops_with_file_line_and_problem(case, tmp_path):
    bad, message = BAD_JSONL[case]
    path = write_jsonl(tmp_path / "l.jsonl", [{"id": "h2", "spans": []}, bad])
    with pytest.raises(PipelineError, match=message):
        labels_from(path)


def test_labels_of_headlines_not_here_are_counted_not_errors(tmp_path):
    """A team's labels of other runs (unknown id, text or CoNLL tokens) are no problem of the file."""
    path = write_jsonl(
        tmp_path / "l.jsonl",
        [
            {"id": "h2", "spans": []},
            {"id": "nope", "spans": []},
            {"text": "Visa Rallies Again", "spans": [{"start": 0, "end": 4}]},
        ],
    )
    (tmp_path / "l.conll").write_text("Visa B-company\nFalls O\n")
    labels = read_label_file(path, types()) + read_label_file(tmp_path / "l.conll", types())
    resolved = resolve(labels, HEADLINES)
    assert set(resolved.labels) == {"h2"}
    assert resolved.summary() == {
        "labels_not_in_run": 3,
        "first_not_in_run": [f"{path}:2", f"{path}:3", f"{tmp_path / 'l.conll'}:1"],
    }


def test_candidates_picks_the_headlines_labels_can_name_out_of_a_frame():
    frame = pl.DataFrame(HEADLINES)
    labels = [
        FileLabel("f:1", id="h1"),
        FileLabel("f:2", text="Visa Rallies"),
        FileLabel("f:3", tokens=["Gold", "Rises", "As", "Dollar", "Falls"]),
    ]
    assert sorted(h["id"] for h in candidates(labels, frame)) == ["h1", "h2", "h3", "h4"]
    assert candidates([FileLabel("f:1", id="other")], frame) == []


def test_bad_utf8_names_its_line(tmp_path):
    path = tmp_path / "l.jsonl"
    path.write_bytes(b'{"id": "h2", "spans": []}\n{"id": "h3\xff", "spans": []}\n')
    with pytest.raises(PipelineError, match=r"l.jsonl:2: not UTF-8"):
        labels_from(path)


BAD_CONLL = {
    "I- without B-": ("Visa I-company\nRallies O\n", r"l.conll:1: tag I-company does not continue an entity"),
    "unknown tag": ("Visa COMPANY\nRallies O\n", r"l.conll:1: unknown tag 'COMPANY'"),
    "missing tag": ("Visa B-company\nRallies\n", r"l.conll:2: malformed line 'Rallies'"),
    "token not in the text": ("# id = h3\nVisas B-company\nRallies O\n", r"l.conll:2: token 'Visas' does not match"),
}


@pytest.mark.parametrize("case", sorted(BAD_CONLL))
def test_bad_conll_stops_with_file_line_and_problem(case, tmp_path):
    text, message = BAD_CONLL[case]
    (tmp_path / "l.conll").write_text(text)
    with pytest.raises(PipelineError, match=message):
        labels_from(tmp_path / "l.conll")


def test_missing_file_and_file_outside_the_tracked_directory(tmp_path):
    with pytest.raises(PipelineError, match=r"nope.jsonl: label file not found"):
        labels_from(tmp_path / "nope.jsonl")
    with pytest.raises(PipelineError, match=r"argilla_review.label_files: .*x.jsonl is not inside .*tracked"):
        require_inside(tmp_path / "x.jsonl", tmp_path / "tracked", "argilla_review.label_files")
    require_inside(tmp_path / "tracked" / "x.jsonl", tmp_path / "tracked", "argilla_review.label_files")


def test_standalone_test_set_needs_text_and_checks_spans(tmp_path):
    path = write_jsonl(tmp_path / "t.jsonl", [{"text": "Visa Rallies", "spans": [{"start": 0, "end": 4}]}])
    assert standalone(read_label_file(path, types())).records == [
        {"text": "Visa Rallies", "spans": [{"start": 0, "end": 4, "text": "Visa"}]}
    ]
    write_jsonl(path, [{"id": "h3", "spans": []}])
    with pytest.raises(PipelineError, match=r"t.jsonl:1: a test set line needs 'text'"):
        standalone(read_label_file(path, types()))
