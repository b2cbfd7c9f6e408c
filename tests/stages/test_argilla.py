"""argilla_pull + argilla_review + argilla_push: the pure merge, and the round trip against a real Argilla server
started for the tests, both as stage commands and through `dvc repro`."""

import datetime as dt
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
import yaml

from scripts import argilla_server
from scripts.worktree import copy_worktree
from stages.argilla_pull import check_polling, missing_from, polls_every_repro, snapshot_rows, with_missing
from stages.argilla_push import argilla_record, records_to_push, this_round
from stages.argilla_review import merge, missing_reviews, review_metrics
from stages.core.errors import ParamsError
from stages.core.schema import SPANS, seeded_share
from stages.core.stage_params import ReviewParams
from stages.review.responses import resolve_responses
from stages.review.tables import auto_accept, judged_labels
from stages.teacher.local_server import free_port
from tests.helpers import ALL_STAGES, LABELLED, POLLED, ROOT, edit_params, project, sh, shipped_params, stages_run


def split_frame(rows: list[tuple[str, str, bool, list[tuple[int, int]]]], year: int = 2019) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "id": [r[0] for r in rows],
            "text": [r[1] for r in rows],
            "date": [dt.date(year, 1, 2)] * len(rows),
            "valid": [r[2] for r in rows],
            "teacher_spans": [[{"start": a, "end": b, "text": r[1][a:b]} for a, b in r[3]] for r in rows],
            "agreement": [None] * len(rows),
            "clusters": [["apple"]] * len(rows),
            "sample_reason": ["cluster"] * len(rows),
        },
        schema_overrides={"teacher_spans": SPANS, "agreement": pl.Float64},
    )


def response(user, status, spans=()):
    return {"user_id": user, "status": status, "value": [{"start": a, "end": b, "label": "company"} for a, b in spans]}


def test_record_carries_text_metadata_and_teacher_suggestion():
    row = split_frame([("a1", "Apple (AAPL) Up", True, [(0, 5), (7, 11)])]).row(0, named=True) | {
        "split": "test",
        "priority": 1.5,
    }
    record = argilla_record(row, "teacher-model")
    assert (
        record["id"] == "a1" and record["fields"] == {"text": "Apple (AAPL) Up"} and record["agent"] == "teacher-model"
    )
    assert record["metadata"] == {
        "split": "test",
        "year": 2019,
        "llm_valid": "true",
        "cluster": "apple",
        "sampled_as": "cluster",
        "priority": 1.5,
    }
    assert record["suggestion"] == [
        {"start": 0, "end": 5, "label": "company"},
        {"start": 7, "end": 11, "label": "company"},
    ]


def test_drafts_do_not_count_and_one_reviewer_is_no_conflict():
    assert resolve_responses([response("u2", "draft", [(0, 1)])]) == (None, None)
    assert resolve_responses([response("u2", "discarded"), response("u1", "draft", [(0, 5)])]) == (
        ("discarded", []),
        None,
    )
    assert resolve_responses([response("u2", "submitted", [(6, 8), (0, 5)])]) == (("submitted", [(0, 5), (6, 8)]), None)


def test_several_reviewers_the_majority_wins_and_the_conflict_says_who_said_what():
    decision, conflict = resolve_responses(
        [
            response("u1", "submitted", [(0, 3)]),
            response("u3", "submitted", [(0, 5)]),
            response("u2", "submitted", [(0, 5)]),
            response("u4", "discarded"),
        ]
    )
    assert decision == ("submitted", [(0, 5)])  # u1 has the lowest id but is outvoted
    assert conflict == {
        "resolved_by": "majority",
        "votes": [
            {"status": "submitted", "spans": [[0, 5]], "users": ["u2", "u3"]},
            {"status": "submitted", "spans": [[0, 3]], "users": ["u1"]},
            {"status": "discarded", "spans": [], "users": ["u4"]},
        ],
    }
    assert resolve_responses(
        [response("u1", "discarded"), response("u2", "discarded"), response("u0", "submitted", [(0, 5)])]
    )[0] == ("discarded", [])


def test_a_tie_goes_to_a_submission_then_to_the_lowest_user_id_in_any_listing_order():
    tied = [response("u2", "submitted", [(0, 3)]), response("u1", "discarded"), response("u3", "submitted", [(0, 5)])]
    for responses in (tied, tied[::-1]):
        decision, conflict = resolve_responses(responses)
        assert decision == ("submitted", [(0, 3)]) and conflict["resolved_by"] == "tie-break"
        assert [v["users"] for v in conflict["votes"]] == [["u2"], ["u3"], ["u1"]]


def test_merge_argilla_beats_file_beats_teacher_and_discarded_is_dropped():
    frame = split_frame(
        [
            ("a", "Apple And Dow Up", True, [(0, 5), (10, 13)]),
            ("b", "Tesla Down", True, [(0, 5)]),
            ("c", "Gold Up", True, []),
            ("d", "garbled", False, []),
            ("e", "Visa Up", True, []),
        ]
    )
    files = {
        "a": {"spans": [{"start": 10, "end": 13, "text": "Dow"}], "where": "f:1"},
        "b": {"spans": [{"start": 0, "end": 5, "text": "Tesla"}], "where": "f:2"},
        "e": {"spans": [{"start": 0, "end": 4, "text": "Visa"}], "where": "f:3"},
    }
    merged, conflicts = merge(
        frame, {"a": [response("u1", "submitted", [(0, 5)])], "b": [response("u1", "discarded")]}, files
    )
    assert conflicts == []
    rows = {r["id"]: r for r in merged.iter_rows(named=True)}
    assert [s["text"] for s in rows["a"]["label_spans"]] == ["Apple"] and len(rows["a"]["teacher_spans"]) == 2
    assert [s["text"] for s in rows["e"]["label_spans"]] == ["Visa"] and rows["e"]["human_origin"] == "file"
    assert merged.select(frame.columns).equals(frame)  # the teacher's columns pass through untouched
    assert [(rows[i]["label_source"], rows[i]["human_origin"]) for i in "abcde"] == [
        ("human", "argilla"),
        ("none", "argilla"),
        ("llm", None),
        ("none", None),
        ("human", "file"),
    ]
    assert rows["b"]["discarded"] and not rows["c"]["reviewed"] and rows["e"]["reviewed"]
    metrics = review_metrics(merged, conflicts)
    assert metrics["teacher_vs_human"] == {"precision": 0.5, "recall": 0.5, "f1": 0.5, "tp": 1, "fp": 1, "fn": 1}
    assert (
        metrics["reviewed"],
        metrics["human"],
        metrics["human_from_argilla"],
        metrics["human_from_files"],
        metrics["discarded"],
        metrics["unlabelled"],
    ) == (3, 2, 1, 1, 1, 2)
    assert missing_reviews({"test": merged}, ["test"]) == ["test: 2 of 5 not reviewed"]


def test_seeded_share_is_seeded_and_nested():
    ids = [f"id{i}" for i in range(100)]
    half, quarter = seeded_share(ids, 0.5, 0), seeded_share(ids, 0.25, 0)
    assert len(half) == 50 and len(quarter) == 25 and quarter < half
    assert seeded_share(ids, 0.5, 1) != half and seeded_share(list(reversed(ids)), 0.5, 0) == half


def test_only_new_or_changed_records_are_pushed_and_drafts_stay_out_of_the_snapshot():
    row = split_frame([("a1", "Apple Up", True, [(0, 5)])]).row(0, named=True) | {"split": "test", "priority": 0.5}
    record = argilla_record(row, "teacher")
    assert records_to_push([record], {}) == [record]
    assert records_to_push([record], {"a1": record}) == []
    assert records_to_push([record], {"a1": record | {"suggestion": []}}) == [record]
    snapshot = snapshot_rows(
        {
            "test": {
                "a1": [response("u2", "submitted", [(6, 8), (0, 5)]), response("u1", "draft")],
                "a2": [response("u1", "draft", [(0, 1)])],
            }
        },
        {"a1": "test"},
    )
    assert snapshot == [
        {
            "id": "a1",
            "responses": [
                {
                    "user_id": "u2",
                    "status": "submitted",
                    "split": "test",
                    "value": [{"start": 0, "end": 5}, {"start": 6, "end": 8}],
                }
            ],
        }
    ]


def test_a_review_belongs_to_the_headline_not_to_the_split_it_was_made_in():
    """A headline reviewed in the valid dataset that moved to test (new split.ranges) keeps its review; a
    reviewer who answered it in both datasets counts once, with the answer in its current split's dataset."""
    pulled = {
        "valid": {"h1": [response("u1", "submitted", [(0, 5)]), response("u2", "submitted", [(0, 3)])]},
        "test": {"h1": [response("u2", "submitted", [(0, 5)])]},
    }
    rows = snapshot_rows(pulled, {"h1": "test"})
    assert [(r["user_id"], r["split"], r["value"]) for r in rows[0]["responses"]] == [
        ("u1", "valid", [{"start": 0, "end": 5}]),
        ("u2", "test", [{"start": 0, "end": 5}]),
    ]
    test = split_frame([("h1", "Apple Up", True, [])])
    merged, conflicts = merge(test, {row["id"]: row["responses"] for row in rows}, {})
    assert (
        merged["label_source"].to_list() == ["human"]
        and merged["label_spans"].to_list() == [[{"start": 0, "end": 5, "text": "Apple"}]]
        and conflicts == []
    )


def test_submissions_the_server_no_longer_holds_are_kept_from_the_previous_snapshot():
    previous = [
        {"split": "test", "id": "h1", "responses": [{"user_id": "u1", "status": "submitted", "value": []}]},
        {
            "id": "h2",
            "responses": [
                {"user_id": "u1", "status": "discarded", "split": "valid", "value": []},
                {"user_id": "u2", "status": "submitted", "split": "valid", "value": []},
            ],
        },
    ]
    now = snapshot_rows(
        {"valid": {"h2": [response("u2", "submitted", [(0, 4)]), response("u1", "draft", [(0, 4)])]}}, {"h2": "valid"}
    )
    missing = missing_from(now, previous)  # h1 is gone; u1's discard of h2 is a draft now; u2's answer is there
    assert missing == {
        "h1": [{"user_id": "u1", "status": "submitted", "split": "test", "value": []}],
        "h2": [{"user_id": "u1", "status": "discarded", "split": "valid", "value": []}],
    }
    kept = with_missing(now, missing)
    assert [(row["id"], [(r["user_id"], r["status"]) for r in row["responses"]]) for row in kept] == [
        ("h1", [("u1", "submitted")]),
        ("h2", [("u1", "discarded"), ("u2", "submitted")]),
    ]
    assert missing_from(kept, kept) == {} and with_missing(kept, {}) == kept


# ---- against a real server -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("argilla")
    ports = {"port": free_port(), "search_port": free_port(), "redis_port": free_port()}
    owner = argilla_server.up(data_dir, **ports)
    yield owner | {"data_dir": data_dir, "ports": ports}
    argilla_server.down(data_dir)


def review_project(directory: Path, argilla: dict, **review) -> Path:
    """A directory with the three splits, their headlines and priorities, and params pointing at `argilla`."""
    params = shipped_params()
    params["argilla_review"].update(
        {
            "server": "argilla",
            "api_url": argilla["url"],
            "label_dir": "labels",
            "label_files": [],
            "dataset_prefix": directory.name[:30],
            **review,
        }
    )
    splits = {
        "train": split_frame([("tr1", "Visa Rallies", True, [(0, 4)])], 2012),
        "valid": split_frame([("va1", "Oracle Slips", True, [(0, 6)])], 2017),
        "test": split_frame(
            [
                ("te1", "Apple And Dow Up", True, [(0, 5), (10, 13)]),
                ("te2", "Tesla Down", True, [(0, 5)]),
                ("te3", "Gold Up", True, []),
            ]
        ),
    }
    every = pl.concat(splits.values())
    tables = {f"data/split/{name}.parquet": frame for name, frame in splits.items()}
    tables["data/headlines.parquet"] = every.select("id", "text", "date")
    tables["data/priority.parquet"] = every.select(
        "id",
        priority=pl.int_range(pl.len()).cast(pl.Float64) / 2,
        teacher_span_scores=pl.col("teacher_spans").list.eval(pl.lit(0.5)),
        missed_score=pl.lit(0.0),
    )
    project(directory, params, copies=[params["argilla_review"]["guidelines_file"]], tables=tables)
    (directory / "labels").mkdir()
    return directory


SUBMISSIONS = "data/review/argilla_submissions.jsonl"
QUEUE = "data/review/queue.parquet"
PULL = ["stages.argilla_pull", "--split-dir", "data/split", "--out", SUBMISSIONS]
PUSH = [
    "stages.argilla_push",
    "--split-dir",
    "data/split",
    "--queue",
    QUEUE,
    "--guidelines",
    "data/prompts/review_guidelines.md",
    "--metrics",
    "metrics/argilla_push.json",
]
REVIEW = [
    "stages.argilla_review",
    "--split-dir",
    "data/split",
    "--submissions",
    SUBMISSIONS,
    "--priority",
    "data/priority.parquet",
    "--headlines",
    "data/headlines.parquet",
    "--label-dir",
    "labels",
    "--out-dir",
    "data/reviewed",
    "--metrics",
    "metrics/review.json",
    "--calibration",
    "metrics/calibration.json",
    "--reliability-dir",
    "metrics/calibration",
    "--queue",
    QUEUE,
]


def review_stage(directory: Path, api_key: str | None, commands=(PULL, REVIEW, PUSH)):
    """argilla_pull, argilla_review and argilla_push, as dvc.yaml runs them (the scout's priority table is a fixture
    here); stops at the first failure (stderr of all)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("ARGILLA_API_KEY", None)
    if api_key:
        env["ARGILLA_API_KEY"] = api_key
    logs = ""
    for command in commands:
        run = subprocess.run(
            [sys.executable, "-m", *command], cwd=directory, env=env, capture_output=True, text=True, timeout=300
        )
        logs += run.stderr
        if run.returncode:
            break
    run.stderr = logs
    return run


def write_snapshot(directory: Path, rows: list[dict]) -> None:
    (directory / SUBMISSIONS).parent.mkdir(parents=True, exist_ok=True)
    (directory / SUBMISSIONS).write_text("".join(json.dumps(row) + "\n" for row in rows))


NO_SERVER = {"url": "http://127.0.0.1:9"}  # argilla_review reads the snapshot only; pull and push run with server none


def test_auto_accept_learns_from_train_and_valid_labels_only_and_marks_unreviewed_headlines(tmp_path):
    def frames(human: int, unreviewed: int) -> pl.DataFrame:
        rows = [(f"h{i:03}", "Visa Rallies", True, [(0, 4)]) for i in range(human)]
        rows += [(f"u{i}", "Visa Rallies", True, [(0, 4)]) for i in range(unreviewed)]
        files = {f"h{i:03}": {"spans": [{"start": 0, "end": 4, "text": "Visa"}], "where": "f"} for i in range(human)}
        return merge(split_frame(rows), {}, files)[0]

    trusted = {"teacher_span_scores": [0.9], "missed_score": 0.1}
    scores = {f"h{i:03}": trusted for i in range(200)} | {"u0": trusted}
    scores["u1"] = {"teacher_span_scores": [0.2], "missed_score": 0.1}  # one the scout doubts
    params = ReviewParams.model_validate(shipped_params()["argilla_review"] | {"accept_precision": 0.95})

    def accept(merged, params):
        return auto_accept(merged, {name: judged_labels(frame, scores) for name, frame in merged.items()}, params)

    # 200 right train labels at 0.9 support 0.95: the unreviewed headline the scout doubts stays the teacher's
    merged = {"train": frames(200, 2), "valid": frames(0, 0), "test": frames(0, 0)}
    marked, metrics, curves = accept(merged, params)
    assert dict(zip(marked["train"]["id"], marked["train"]["label_source"]))["u0"] == "accepted"
    assert dict(zip(marked["train"]["id"], marked["train"]["label_source"]))["u1"] == "llm"
    assert metrics["accepted_unreviewed"] == {"train": 1, "valid": 0, "test": 0}
    assert metrics["rule"] == {"span_threshold": 0.9, "no_other_company_threshold": 0.9}
    assert metrics["cross_fitted"]["accepted_span_precision"] == 1.0 and set(curves) == {
        "scout_span",
        "no_other_company",
    }
    # the same labels in the test split only measure the rule: they never make it
    merged = {"train": frames(0, 2), "valid": frames(0, 0), "test": frames(200, 0)}
    marked, metrics, _ = accept(merged, params)
    assert metrics["accepted_unreviewed"]["train"] == 0 and metrics["test_held_out"]["headlines"] == 200
    assert metrics["rule"] == {"span_threshold": None, "no_other_company_threshold": None}
    # accept_precision: null accepts nothing
    off = params.model_copy(update={"accept_precision": None})
    assert (
        accept({"train": frames(200, 2), "valid": frames(0, 0), "test": frames(0, 0)}, off)[1]["accepted_unreviewed"][
            "train"
        ]
        == 0
    )


def test_a_headline_that_moved_split_keeps_its_review_and_disagreements_are_listed(tmp_path):
    directory = review_project(tmp_path, NO_SERVER, server="none")
    write_snapshot(
        directory,
        [  # te1 was reviewed while it was a valid headline (a snapshot from before ids ruled)
            {
                "split": "valid",
                "id": "te1",
                "responses": [
                    {"user_id": "u1", "status": "submitted", "value": [{"start": 0, "end": 5}]},
                    {
                        "user_id": "u2",
                        "status": "submitted",
                        "value": [{"start": 0, "end": 5}, {"start": 10, "end": 13}],
                    },
                    {"user_id": "u3", "status": "submitted", "value": [{"start": 0, "end": 5}]},
                ],
            }
        ],
    )
    run = review_stage(directory, None, [REVIEW])
    assert run.returncode == 0, run.stderr[-2000:]
    te1 = reviewed(directory, "test")["te1"]
    assert (te1["label_source"], [s["text"] for s in te1["label_spans"]]) == ("human", ["Apple"])
    metrics = json.loads((directory / "metrics/review.json").read_text())["test"]
    assert metrics["reviewer_conflicts"] == 1 and metrics["reviewer_conflict_records"] == [
        {
            "id": "te1",
            "text": "Apple And Dow Up",
            "resolved_by": "majority",
            "votes": [
                {"status": "submitted", "spans": [[0, 5]], "users": ["u1", "u3"]},
                {"status": "submitted", "spans": [[0, 5], [10, 13]], "users": ["u2"]},
            ],
        }
    ]
    assert "test: reviewers disagree on te1 'Apple And Dow Up', resolved by majority" in run.stderr


def test_the_snapshot_never_shrinks_silently(tmp_path):
    """The server no longer holds a submission (here: server none; a fresh server or a new prefix alike)."""
    directory = review_project(tmp_path, NO_SERVER, server="none")
    previous = [
        {
            "id": "te1",
            "responses": [{"user_id": "u1", "status": "submitted", "split": "test", "value": [{"start": 0, "end": 5}]}],
        }
    ]
    write_snapshot(directory, previous)
    run = review_stage(directory, None, [PULL])
    assert run.returncode == 0, run.stderr[-2000:]
    assert [json.loads(line) for line in (directory / SUBMISSIONS).read_text().splitlines()] == previous
    assert (
        "kept from the previous snapshot: 1 responses to 1 records that server none no longer holds (te1)" in run.stderr
    )

    params = yaml.safe_load((directory / "params.yaml").read_text())
    params["argilla_review"]["keep_missing_submissions"] = False  # the user says so, explicitly
    (directory / "params.yaml").write_text(yaml.safe_dump(params))
    run = review_stage(directory, None, [PULL])
    assert run.returncode == 0 and (directory / SUBMISSIONS).read_text() == "\n"  # no row: DVC warns of empty files
    assert "dropped 1 responses to 1 records that server none no longer holds (te1)" in run.stderr


def reviewed(directory: Path, split: str) -> dict:
    return {r["id"]: r for r in pl.read_parquet(directory / f"data/reviewed/{split}.parquet").iter_rows(named=True)}


def annotate(server: dict, dataset_name: str, answers: dict[str, tuple[str, list]], username: str = "reviewer") -> None:
    """As an annotator (a separate user, as in real life), submit or discard records."""
    import argilla as rg

    owner = rg.Argilla(api_url=server["url"], api_key=server["api_key"])
    user = (
        owner.users(username)
        or rg.User(username=username, password="reviewer-pass-123", role="annotator", client=owner).create()
    )
    workspace = owner.workspaces("argilla")
    if user.id not in [u.id for u in workspace.users]:
        workspace.add_user(user)
    dataset = owner.datasets(dataset_name, workspace="argilla")
    records = [r for r in dataset.records(with_responses=True) if r.id in answers]
    for record in records:
        status, spans = answers[record.id]
        record.responses.add(
            rg.Response(
                question_name="companies",
                user_id=user.id,
                status=status,
                value=[{"start": a, "end": b, "label": "company"} for a, b in spans],
            )
        )
    dataset.records.log(records)


def responses_snapshot(server: dict, dataset_name: str) -> dict:
    import argilla as rg

    dataset = rg.Argilla(api_url=server["url"], api_key=server["api_key"]).datasets(dataset_name, workspace="argilla")
    return {
        r.id: sorted((str(x.user_id), str(x.status), str(x.value)) for x in r.responses)
        for r in dataset.records(with_responses=True)
    }


@pytest.mark.slow
def test_round_trip_human_labels_win_and_are_never_touched_by_a_repush(server, tmp_path):
    directory = review_project(tmp_path, server)
    run = review_stage(directory, server["api_key"])
    assert run.returncode == 0, run.stderr[-2000:]
    assert not any(r["reviewed"] for r in reviewed(directory, "test").values())

    test_dataset = f"{tmp_path.name[:30]}-test"
    import argilla as rg

    dataset = rg.Argilla(api_url=server["url"], api_key=server["api_key"]).datasets(test_dataset, workspace="argilla")
    assert {r.id: r.metadata["priority"] for r in dataset.records} == {"te1": 1.0, "te2": 1.5, "te3": 2.0}
    first = dataset.records(query=rg.Query(filter=rg.Filter(("metadata.priority", ">=", 1.5))))
    assert sorted(r.id for r in first) == ["te2", "te3"]  # what a reviewer's priority filter shows
    annotate(server, test_dataset, {"te1": ("submitted", [(0, 5)]), "te2": ("discarded", [])})
    run = review_stage(directory, server["api_key"])
    assert run.returncode == 0, run.stderr[-2000:]
    test = reviewed(directory, "test")
    assert [s["text"] for s in test["te1"]["label_spans"]] == ["Apple"] and test["te1"]["label_source"] == "human"
    assert test["te2"]["discarded"] and test["te2"]["label_source"] == "none"
    assert test["te3"]["label_source"] == "llm" and not test["te3"]["reviewed"]
    metrics = yaml.safe_load((directory / "metrics/review.json").read_text())
    assert metrics["test"]["teacher_vs_human"]["precision"] == 0.5 and metrics["test"]["reviewed"] == 2

    before = responses_snapshot(server, test_dataset)
    run = review_stage(directory, server["api_key"])  # push again: nothing changed, so nothing is sent
    assert run.returncode == 0 and "test: pushed 0 new or changed of 3 records" in run.stderr
    assert responses_snapshot(server, test_dataset) == before, "a re-push must not change any response"

    written = (directory / "data/reviewed/test.parquet").read_bytes()
    params = yaml.safe_load((directory / "params.yaml").read_text())
    params["argilla_review"]["require_full_review"] = ["valid", "test"]
    (directory / "params.yaml").write_text(yaml.safe_dump(params))
    run = review_stage(directory, server["api_key"])
    assert run.returncode != 0 and "valid: 1 of 1 not reviewed; test: 1 of 3 not reviewed" in run.stderr
    assert (directory / "data/reviewed/test.parquet").read_bytes() == written


@pytest.mark.slow
def test_two_reviewers_answer_the_overlap_share_and_their_agreement_is_measured(server, tmp_path):
    import argilla as rg

    directory = review_project(tmp_path, server, two_reviewer_share=0.67)  # 2 of the 3 test headlines
    run = review_stage(directory, server["api_key"])
    assert run.returncode == 0 and "test: pushed 3 new or changed of 3 records (2 for two reviewers)" in run.stderr
    owner = rg.Argilla(api_url=server["url"], api_key=server["api_key"])
    prefix = tmp_path.name[:30]
    overlap = owner.datasets(f"{prefix}-test-overlap", workspace="argilla")
    single = owner.datasets(f"{prefix}-test", workspace="argilla")
    assert overlap.settings.distribution.min_submitted == 2 and single.settings.distribution.min_submitted == 1
    assert sorted(r.id for r in overlap.records) == ["te1", "te3"]  # the seeded share
    assert [r.id for r in single.records] == ["te2"]
    annotate(server, overlap.name, {"te1": ("submitted", [(0, 5), (10, 13)]), "te3": ("submitted", [])})
    # one submission does not complete an overlap record: Argilla keeps offering it until a second reviewer answers
    assert {r.id: str(r.status) for r in overlap.records} == {"te1": "pending", "te3": "pending"}
    annotate(server, overlap.name, {"te1": ("submitted", [(0, 5)]), "te3": ("submitted", [])}, "second")
    assert {r.id: str(r.status) for r in overlap.records} == {"te1": "completed", "te3": "completed"}
    run = review_stage(directory, server["api_key"])
    assert run.returncode == 0, run.stderr[-2000:]
    metrics = yaml.safe_load((directory / "metrics/review.json").read_text())
    figures = metrics["agreement"]
    # te3: no company from both; te1: Apple from both, Dow from one (P 1/2, R 1/1 either way round -> F1 0.667)
    assert (figures["records_with_several_reviewers"], figures["pairs"], figures["pairs_identical"]) == (2, 2, 0.5)
    assert figures["exact_f1"] == figures["overlap_f1"] == 0.6667
    # a tie: the lowest user id's label is adjudicated, and te1 is listed for adjudication
    assert sorted(v["exact_f1"] for v in figures["reviewer_vs_adjudicated"].values()) == [0.6667, 1.0]
    assert [c["id"] for c in metrics["test"]["reviewer_conflict_records"]] == ["te1"]


def test_a_round_sends_valid_and_test_whole_and_the_train_batch_in_queue_order():
    splits = {
        "train": split_frame([("a", "A Up", True, []), ("b", "B Up", True, []), ("c", "C Up", True, [])]),
        "valid": split_frame([("v", "V Up", True, [])]),
        "test": split_frame([("t", "T Up", True, [])]),
    }
    queue = pl.DataFrame(
        {"id": ["a", "b", "c", "v"], "batch": [None, 2, 1, None], "priority": [0.1, 0.2, 0.3, 0.4]},
        schema_overrides={"batch": pl.Int64},
    ).with_columns(expected_errors=pl.lit(None, pl.Float64), label_confidence=pl.lit(None, pl.Float64))
    rows = this_round(splits, queue, batch_size=2)
    assert rows["train"]["id"].to_list() == ["c", "b"] and rows["valid"].height == rows["test"].height == 1
    assert this_round(splits, queue, batch_size=None)["train"]["id"].to_list() == ["a", "b", "c"]


def rounds_project(directory: Path, server: dict) -> Path:
    """Four train headlines the scout ranks t1 > t2 > t3 > t4, though it doubts t4's teacher span (score 0.1, the
    others 0.9); 19 valid headlines labelled in a file, where the teacher's spans the scout scores 0.9 are right
    and those it scores 0.1 wrong: one more human label (20) and the calibration says so."""
    params = shipped_params()
    params["argilla_review"].update(
        server="argilla",
        api_url=server["url"],
        label_dir="labels",
        label_files=["labels/valid.jsonl"],
        dataset_prefix=directory.name[:30],
        batch_size=1,
    )
    train = [(f"t{i}", f"Visa Rallies {i}", True, [(0, 4)]) for i in range(1, 5)]
    valid = [(f"v{i:02}", f"Visa Slips {i}", True, [(0, 4)]) for i in range(19)]
    splits = {
        "train": split_frame(train, 2012),
        "valid": split_frame(valid, 2017),
        "test": split_frame([("te1", "Apple Up", True, [(0, 5)])]),
    }
    every = pl.concat(splits.values())
    doubted = {"t4"} | {f"v{i:02}" for i in range(10, 19)}
    tables = {f"data/split/{name}.parquet": frame for name, frame in splits.items()}
    tables["data/headlines.parquet"] = every.select("id", "text", "date")
    tables["data/priority.parquet"] = pl.DataFrame(
        {
            "id": every["id"],
            "priority": [{"t1": 4.0, "t2": 3.0, "t3": 2.0, "t4": 1.0}.get(i, 0.0) for i in every["id"]],
            "teacher_span_scores": [[0.1 if i in doubted else 0.9] for i in every["id"]],
            "missed_score": [0.0] * every.height,
        }
    )
    project(directory, params, copies=[params["argilla_review"]["guidelines_file"]], tables=tables)
    (directory / "labels").mkdir()
    (directory / "labels/valid.jsonl").write_text(
        "".join(
            json.dumps({"id": i, "spans": [] if i in doubted else [{"start": 0, "end": 4}]}) + "\n" for i, *_ in valid
        )
    )
    return directory


@pytest.mark.slow
def test_the_second_round_is_chosen_with_the_first_rounds_submissions(server, tmp_path):
    import argilla as rg

    directory = rounds_project(tmp_path, server)
    run = review_stage(directory, server["api_key"])
    assert run.returncode == 0 and "train: pushed 1 new or changed of 1 records" in run.stderr, run.stderr[-2000:]
    owner = rg.Argilla(api_url=server["url"], api_key=server["api_key"])
    train = owner.datasets(f"{tmp_path.name[:30]}-train", workspace="argilla")
    # 19 human labels calibrate nothing yet: the scout's priority picks round 1
    assert [r.id for r in train.records] == ["t1"]
    assert {r.id for r in owner.datasets(f"{tmp_path.name[:30]}-valid", workspace="argilla").records} == {
        f"v{i:02}" for i in range(19)
    }
    annotate(server, train.name, {"t1": ("submitted", [(0, 4)])})
    run = review_stage(directory, server["api_key"])
    assert run.returncode == 0, run.stderr[-2000:]
    # t1's label is the 20th: calibrated, the teacher span the scout doubts is likely wrong, so t4 goes before t2
    held = {r.id: r.metadata for r in train.records}
    assert sorted(held) == ["t1", "t4"]
    assert held["t4"]["expected_errors"] == 1.0 and held["t4"]["label_confidence"] == 0.0
    pushed = json.loads((directory / "metrics/argilla_push.json").read_text())
    assert pushed["records"]["train"] == 1 and pushed["new_or_changed"]["train"] == 1
    calibration = json.loads((directory / "metrics/calibration.json").read_text())
    assert calibration["fitted_on"]["headlines"] == 20


@pytest.mark.slow
def test_an_emptied_teacher_answer_clears_its_suggestion_and_a_fresh_dataset_loses_no_submission(server, tmp_path):
    import argilla as rg

    directory = review_project(tmp_path, server)
    assert review_stage(directory, server["api_key"]).returncode == 0
    test_dataset = f"{tmp_path.name[:30]}-test"
    annotate(server, test_dataset, {"te1": ("submitted", [(0, 5)])})
    split = directory / "data/split/test.parquet"
    frame = pl.read_parquet(split)
    rows = [r | {"teacher_spans": []} if r["id"] == "te2" else r for r in frame.to_dicts()]  # its answer is empty now
    pl.DataFrame(rows, schema=frame.schema).write_parquet(split)
    run = review_stage(directory, server["api_key"])
    assert run.returncode == 0 and "test: pushed 1 new or changed of 3 records" in run.stderr, run.stderr[-2000:]
    dataset = rg.Argilla(api_url=server["url"], api_key=server["api_key"]).datasets(test_dataset, workspace="argilla")
    suggested = {r.id: [s.value for s in r.suggestions] for r in dataset.records(with_suggestions=True)}
    assert not any(suggested["te2"]) and any(suggested["te1"]), suggested  # nothing stale pre-filled for te2
    run = review_stage(directory, server["api_key"])
    assert run.returncode == 0 and "test: pushed 0 new or changed of 3 records" in run.stderr, run.stderr[-2000:]

    params = yaml.safe_load((directory / "params.yaml").read_text())
    params["argilla_review"]["dataset_prefix"] += "-new"  # fresh datasets: no submission on them
    (directory / "params.yaml").write_text(yaml.safe_dump(params))
    run = review_stage(directory, server["api_key"])
    assert run.returncode == 0, run.stderr[-2000:]
    assert "kept from the previous snapshot: 1 responses to 1 records" in run.stderr
    assert reviewed(directory, "test")["te1"]["human_origin"] == "argilla"


@pytest.mark.slow
def test_dvc_repro_reruns_exactly_what_a_new_submission_changes(server, repo, fake_teacher, monkeypatch):
    monkeypatch.setenv("ARGILLA_API_KEY", server["api_key"])
    edit_params(
        repo, lambda p: p["argilla_review"].update(server="argilla", api_url=server["url"], dataset_prefix="dvc-flow")
    )
    poll_every_repro(repo, True)  # what a review server needs of dvc.yaml, as the stage says
    assert stages_run(sh(repo, "dvc", "repro")) == ALL_STAGES
    assert stages_run(sh(repo, "dvc", "repro")) == POLLED  # nothing submitted: only the cheap check runs

    def first_labelled(split: str) -> dict:
        rows = pl.read_parquet(repo / f"data/reviewed/{split}.parquet").filter(pl.col("label_spans").list.len() > 0)
        return rows.sort("id").row(0, named=True)

    test_record = first_labelled("test")
    assert test_record["human_origin"] == "file"
    annotate(server, "dvc-flow-test", {test_record["id"]: ("submitted", [])})  # the reviewer overrules the file
    # the scout reads the new snapshot, but a test label teaches it nothing (only train reviews steer the order):
    # the same queue, so nothing is pushed
    assert stages_run(sh(repo, "dvc", "repro")) == POLLED | {"scout", "argilla_review", "evaluate", "link"}
    after = {r["id"]: r for r in pl.read_parquet(repo / "data/reviewed/test.parquet").iter_rows(named=True)}
    assert after[test_record["id"]]["label_spans"] == [] and after[test_record["id"]]["human_origin"] == "argilla"
    assert stages_run(sh(repo, "dvc", "repro")) == POLLED

    annotate(server, "dvc-flow-train", {first_labelled("train")["id"]: ("discarded", [])})
    # a round: the scout learns from the train review, argilla_review recalibrates, argilla_push sends the next batch
    round_stages = {"scout", "argilla_review", "argilla_push"}
    assert stages_run(sh(repo, "dvc", "repro")) == POLLED | round_stages | {
        "finetune_gliner",
        "finetune_spanmarker",
        "export@gliner",  # the retrained students' servable folders
        "export@spanmarker",
        "evaluate",
        "tag",
        "link",
    }
    assert stages_run(sh(repo, "dvc", "repro")) == POLLED
    review = yaml.safe_load((repo / "metrics/review.json").read_text())
    assert (review["test"]["human_from_argilla"], review["train"]["discarded"]) == (1, 1)
    assert sum(fake_teacher.requests.values()) == LABELLED  # the teacher is never asked again


@pytest.mark.slow
def test_missing_key_or_unreachable_server_is_a_clear_error_and_writes_nothing(server, tmp_path):
    directory = review_project(tmp_path, server)
    run = review_stage(directory, None)
    assert run.returncode != 0 and "set the API key in $ARGILLA_API_KEY" in run.stderr
    (tmp_path / "down").mkdir()
    directory = review_project(tmp_path / "down", server, api_url=f"http://127.0.0.1:{free_port()}")
    run = review_stage(directory, server["api_key"])
    assert run.returncode != 0 and "cannot reach Argilla at" in run.stderr and "nothing was written" in run.stderr
    assert not (directory / "data/reviewed").exists()


@pytest.mark.slow
def test_reviewer_sees_the_headline_with_its_suggested_span_in_the_web_ui(server, tmp_path):
    """A real browser (headless Chromium) logs in to the local UI and opens the pushed dataset."""
    import argilla as rg
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    directory = review_project(tmp_path, server)
    assert review_stage(directory, server["api_key"]).returncode == 0
    dataset = rg.Argilla(api_url=server["url"], api_key=server["api_key"]).datasets(
        f"{tmp_path.name[:30]}-train", workspace="argilla"
    )

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1400,900",
        f"--user-data-dir={tmp_path / 'chromium'}",
    ):
        options.add_argument(flag)
    browser = webdriver.Chrome(
        service=Service(shutil.which("chromedriver") or "/usr/bin/chromedriver"), options=options
    )
    try:
        wait = WebDriverWait(browser, 60)
        browser.get(f"{server['url']}/sign-in")
        wait.until(lambda b: b.find_elements(By.NAME, "Username"))
        browser.find_element(By.NAME, "Username").send_keys(server["username"])
        password = browser.find_element(By.NAME, "Password")
        password.send_keys(server["password"], Keys.ENTER)
        wait.until(lambda b: "/sign-in" not in b.current_url)
        browser.get(f"{server['url']}/dataset/{dataset.id}/annotation-mode")
        wait.until(lambda b: "Visa Rallies" in b.find_element(By.TAG_NAME, "body").text)
        highlighted = wait.until(
            lambda b: b.execute_script(
                "const h = CSS.highlights.get('hl-companies-2dcompany'); return h && [...h].map(r => r.toString());"
            )
        )
        artifacts = ROOT / "test-artifacts"
        artifacts.mkdir(exist_ok=True)
        browser.save_screenshot(str(artifacts / "argilla_ui.png"))
    finally:
        browser.quit()
    assert highlighted == ["Visa"]  # the teacher's span, pre-filled as a suggestion


def poll_every_repro(repo: Path, on: bool) -> None:
    """Set `always_changed` of the argilla_pull stage in a project's dvc.yaml (one line; comments kept)."""
    dvc_yaml = repo / "dvc.yaml"
    text = dvc_yaml.read_text()
    old, new = f"always_changed: {str(not on).lower()}", f"always_changed: {str(on).lower()}"
    assert text.count(old) == 1, "argilla_pull's always_changed line"
    dvc_yaml.write_text(text.replace(old, new))


def test_a_review_server_needs_dvc_to_ask_it_on_every_repro_and_no_server_needs_nothing(tmp_path, caplog):
    assert polls_every_repro(tmp_path / "dvc.yaml") is None  # run by hand, outside a DVC project: nothing to check
    assert polls_every_repro(ROOT / "dvc.yaml") is False  # as shipped, for server: none
    with pytest.raises(ParamsError, match=r"argilla_review.server: 'argilla' needs `always_changed: true`"):
        check_polling("argilla", False)
    check_polling("argilla", True)
    check_polling("none", False)
    assert not caplog.text
    check_polling("none", True)
    assert "runs it for nothing and `dvc status` is never clean" in caplog.text


def test_with_no_server_the_pull_runs_once_quietly_and_dvc_status_is_clean(tmp_path):
    """On the real dvc.yaml (a copy of the working tree): with server: none, argilla_pull runs when its inputs
    change, writes no empty file (DVC would warn of it, four times a run), and then `dvc status` has nothing to
    say of it; `always_changed: true` is what a review server needs, and it makes the stage always changed."""
    repo = copy_worktree(tmp_path / "repo")
    sh(repo, "git", "init", "-q")
    for split in ("train", "valid", "test"):  # placeholders: with server none the stage reads neither
        (repo / "data/split").mkdir(parents=True, exist_ok=True)
        (repo / f"data/split/{split}.parquet").write_text(split)
    first = sh(repo, "dvc", "repro", "--single-item", "argilla_pull")
    assert stages_run(first) == {"argilla_pull"} and "is empty" not in first, first
    assert (repo / SUBMISSIONS).read_text() == "\n"
    assert stages_run(sh(repo, "dvc", "repro", "--single-item", "argilla_pull")) == set()
    assert "up to date" in sh(repo, "dvc", "status", "argilla_pull")

    poll_every_repro(repo, True)
    assert "always changed" in sh(repo, "dvc", "status", "argilla_pull")
