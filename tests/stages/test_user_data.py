"""A user's own headlines with the demo's label file still in params (issue 20): the file's labels of headlines
this run does not have are counted, never an error, and the labelled headlines the run has join the sample."""

import json

import polars as pl
import pytest

from tests.helpers import ROOT, edit_params, sh, stages_run

DEMO_LABELS = ROOT / "data/sample/reviewer_labels.jsonl"


@pytest.mark.slow
def test_a_users_own_csv_runs_with_the_demo_label_file_still_in_params(repo):
    own = [json.loads(line) for line in (ROOT / "tests/data/headlines.jsonl").read_text().splitlines()]
    demo = [json.loads(line) for line in DEMO_LABELS.read_text().splitlines()]
    shared = [demo[0], demo[700], demo[1400]]  # three of the user's headlines happen to be labelled already
    rows = [{"date": h["date"], "text": h["text"]} for h in own + shared]
    (repo / "data/own").mkdir()
    pl.DataFrame(rows).write_csv(repo / "data/own/headlines.csv")

    def own_data(params):
        # a file without the demo's symbol column keeps none (link then has no feed symbols to check against)
        params["fetch"].update(path="data/own/headlines.csv", source="own", keep_columns=[])
        params["link"].update(symbol_column=None)
        params["llm_label"].update(limit=None)
        params["cluster_sample"].update(sample_size=5)

    edit_params(repo, own_data)
    assert {"fetch", "llm_label", "cluster_sample", "split", "argilla_review"} <= stages_run(
        sh(repo, "dvc", "repro", "argilla_review")
    )
    sample = pl.read_parquet(repo / "data/sampled/sample.parquet")
    joined = sample.filter(pl.col("text").is_in([h["text"] for h in shared]))
    assert joined.height == 3 and sample.height <= 5 + 3
    assert set(joined["sample_reason"]) <= {"human_label", "cluster", "no_company", "invalid"}
    assert json.loads((repo / "metrics/cluster_sample.json").read_text())["sampled_by"].get("human_label", 0) >= 1
    review = json.loads((repo / "metrics/review.json").read_text())["label_files"]
    assert review["labels_not_in_run"] == len(demo) - 3 and review["fetched_not_in_sample"] == 0
    assert review["first_not_in_run"][0] == f"{DEMO_LABELS.relative_to(ROOT)}:2"
    human = sum(
        json.loads((repo / "metrics/review.json").read_text())[s]["human_from_files"]
        for s in ("train", "valid", "test")
    )
    assert human == 3  # the three shared headlines train and score on their human labels
