"""The tag stage: exact batches read a slice at a time, cluster names joined to mentions, every batch cached as it is
made (so a run resumes and reruns are byte-identical), and a real tiny exported GLiNER tagging a feed like its
own predict, in-process and behind scripts/serve.py."""

import datetime as dt
import json
import random
import shutil
import socket
import time
from array import array

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from rapidfuzz import process

from stages import tag
from stages.core.errors import EndpointError, PipelineError
from stages.core.names import SCORERS, CanonicalNames
from stages.core.params import validate
from stages.core.stage_params import TagParams
from stages.http.answer_cache import AnswerCache
from stages.http.client import BadReply
from stages.serving.layout import VERSION_HEADER, model_version
from stages.serving.package import servable_folder
from stages.students.gliner import TRAINING_THRESHOLD
from stages.students.registry import STUDENTS
from stages.students.settings import read_settings
from stages.teacher.local_server import free_port
from tests.helpers import ROOT, Served, Server

SUFFIXES = frozenset({"inc", "corp", "co"})


def write_headlines(path, texts: list[str], row_group_size: int | None = None) -> pl.DataFrame:
    """A fetch-shaped headlines table (sorted by id, as fetch writes it)."""
    frame = pl.DataFrame(
        {
            "id": [f"{i:08x}" for i in range(len(texts))],
            "text": texts,
            "date": [dt.date(2015, 1, 1) + dt.timedelta(days=i % 2000) for i in range(len(texts))],
            "source": ["test"] * len(texts),
        }
    )
    frame.write_parquet(path, row_group_size=row_group_size)
    return frame


def test_headlines_come_in_exact_batches_in_file_order_read_a_slice_at_a_time(tmp_path):
    path = tmp_path / "headlines.parquet"
    rows = 200_003
    frame = write_headlines(
        path, [f"Company {i} Shares Rise After Quarterly Results Beat" for i in range(rows)], row_group_size=10_000
    )
    whole = pq.read_table(path, columns=tag.COLUMNS).nbytes
    sizes, ids, peak = [], [], 0
    for batch in tag.headline_batches(path, 32):
        sizes.append(batch.num_rows)
        ids.extend(batch["id"].to_pylist())
        peak = max(peak, pa.total_allocated_bytes())
        del batch
    assert sizes == [32] * (rows // 32) + [rows % 32] and ids == frame["id"].to_list()
    assert peak < 0.25 * whole, f"reading held {peak} bytes of a {whole}-byte table at once"
    assert [b.num_rows for b in tag.headline_batches(path, 60_000)] == [60_000] * 3 + [20_003]


def test_a_mention_gets_its_clusters_canonical_name_as_cluster_sample_would_have_clustered_it():
    names = ["apple", "microsoft", "microsft", "tesla", "tesla motors"]
    representatives = ["apple", "microsoft", "microsoft", "tesla", "tesla"]
    canonical = CanonicalNames(names, representatives, "ratio", 85, SUFFIXES)
    assert canonical("Apple Inc.") == "apple"  # normalised as cluster_sample does: exact hit
    assert canonical("MICROSFT Corp") == "microsoft"  # a member of the cluster
    assert canonical("Microsoftt") == "microsoft"  # not seen, but it would have joined the cluster
    assert canonical("Tesla Motor") == "tesla"
    assert canonical("Gold") is None and canonical("...") is None


@pytest.mark.parametrize("scorer", sorted(SCORERS))
def test_the_length_window_finds_what_scoring_every_name_finds(scorer):
    rng = random.Random(0)
    letters = "abcdefghij "
    names = sorted({"".join(rng.choice(letters) for _ in range(rng.randint(3, 14))).strip() for _ in range(400)} - {""})
    canonical = CanonicalNames(names, [f"rep-{n}" for n in names], scorer, 80, frozenset())
    members = sorted(names, key=lambda n: (len(n), n))
    for _ in range(300):
        query = "".join(rng.choice(letters) for _ in range(rng.randint(2, 16))).strip()
        if not query or query in names:
            continue
        best = process.extractOne(query, members, scorer=SCORERS[scorer], score_cutoff=80)
        found = canonical(query)
        if best is None:
            assert found is None, query
        else:  # the same score (a tie may pick another member of equal score)
            assert found is not None and SCORERS[scorer](query, found.removeprefix("rep-")) == best[1], query


class CountingStudent:
    """A stand-in predict: the first word of each headline as its span, with a score; counts its calls and can
    fail after a number of batches (an interrupted run)."""

    def __init__(self, fail_after: int | None = None):
        self.calls, self.fail_after = 0, fail_after

    def __call__(self, texts, batch_size=32):
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise KeyboardInterrupt
        assert len(texts) <= batch_size
        self.calls += 1
        return [
            [{"start": 0, "end": t.index(" "), "text": t[: t.index(" ")], "score": 0.5 + i / 100}]
            if not t.startswith("Gold")
            else []
            for i, t in enumerate(texts)
        ]


def run_tag(tmp_path, predict, headlines, canonical, batch_size=4, carried=None):
    """tag's main, in process, on a stand-in student: (run figures, counts, answers used)."""
    with AnswerCache(tmp_path / "cache") as cache:
        todo = tag.Todo(cache, "v1", "in_process", lambda n: None)
        chunks = todo.chunks(tag.headline_batches(headlines, batch_size), batch_size)
        run = tag.predict_missing(predict, todo, chunks, batch_size) | {"unreadable": todo.unreadable}
        used = array("Q")
        counts = tag.write_tagged(
            tmp_path / "tagged.parquet",
            tag.headline_batches(headlines, batch_size, carried),
            tag.stored_spans(cache, "v1", "in_process", used),
            canonical,
            "stub",
            "v1",
            carried,
        )
    return run, counts, used


def test_every_batch_is_cached_as_made_so_an_interrupted_run_resumes_and_reruns_are_byte_identical(
    tmp_path, monkeypatch
):
    monkeypatch.setattr(tag, "ROW_GROUP_ROWS", 8)
    texts = [
        f"{['Microsft', 'Microsoftt', 'Visa'][i % 3]} Beats Estimates Q{i}" if i % 5 else f"Gold Slips {i}"
        for i in range(30)
    ]
    headlines = tmp_path / "headlines.parquet"
    write_headlines(headlines, texts)
    canonical = CanonicalNames(["microsft"], ["microsoft"], "ratio", 85, SUFFIXES)

    interrupted = CountingStudent(fail_after=3)
    with pytest.raises(KeyboardInterrupt):
        run_tag(tmp_path, interrupted, headlines, canonical)
    resumed = CountingStudent()
    run, counts, _ = run_tag(tmp_path, resumed, headlines, canonical)
    assert resumed.calls == 8 - 3 and run["headlines_computed"] == 30 - 3 * 4
    first = (tmp_path / "tagged.parquet").read_bytes()

    again = CountingStudent()
    run_tag(tmp_path, again, headlines, canonical)
    assert again.calls == 0 and (tmp_path / "tagged.parquet").read_bytes() == first
    shutil.rmtree(tmp_path / "cache")
    run_tag(tmp_path, CountingStudent(), headlines, canonical)
    assert (tmp_path / "tagged.parquet").read_bytes() == first, "from the cache or not, the same bytes"

    parquet = pq.ParquetFile(tmp_path / "tagged.parquet")
    assert [parquet.metadata.row_group(i).num_rows for i in range(parquet.num_row_groups)] == [8, 8, 8, 6]
    table = pl.read_parquet(tmp_path / "tagged.parquet")
    assert table["text"].to_list() == texts and table["model_version"].unique().to_list() == ["v1"]
    assert counts == {"headlines": 30, "headlines_with_company": 24, "spans": 24, "spans_with_name": 16}
    spans = table["spans"].to_list()
    assert spans[1] == [{"start": 0, "end": 10, "text": "Microsoftt", "score": 0.5 + 1 / 100, "name": "microsoft"}]
    assert spans[2][0]["name"] is None and spans[0] == []  # Visa is in no cluster; Gold has no company


def test_fetchs_kept_columns_follow_each_headline_into_the_tagged_table(tmp_path):
    headlines = tmp_path / "headlines.parquet"
    frame = write_headlines(headlines, ["Visa Beats Estimates", "Gold Slips", "Microsft Up"]).with_columns(
        Url=pl.Series(["u0", None, "u2"]), Stock_symbol=pl.Series(["V", "GLD", "MSFT"])
    )
    frame.write_parquet(headlines)
    carried = tag.carried_fields(headlines)
    assert [field.name for field in carried] == ["source", "Url", "Stock_symbol"]
    run_tag(tmp_path, CountingStudent(), headlines, CanonicalNames([], [], "ratio", 85, SUFFIXES), 2, carried)
    table = pl.read_parquet(tmp_path / "tagged.parquet")
    assert table.columns == [*tag.TAGGED.names, "source", "Url", "Stock_symbol"]
    assert table.select("id", "Url", "Stock_symbol").equals(frame.select("id", "Url", "Stock_symbol"))
    assert [len(spans) for spans in table["spans"]] == [1, 0, 1]

    frame.rename({"Url": "spans"}).write_parquet(headlines)  # a kept column named like one of tag's own
    with pytest.raises(PipelineError, match=r"column\(s\) \['spans'\] would take the place of tag's own"):
        tag.carried_fields(headlines)


TAG_PARAMS = {
    "student": "gliner",
    "form": "export",
    "batch_size": 32,
    "url": None,
    "token_env": None,
    "concurrency": {"min": 1, "start": 1, "max": 4},
    "timeout_s": 10,
    "max_attempts": 3,
    "give_up_after_s": 30,
}


def test_tag_params_take_null_or_an_http_url():
    raw = TAG_PARAMS
    assert validate(TagParams, raw).url is None
    assert validate(TagParams, raw | {"url": "http://127.0.0.1:8080"}).url == "http://127.0.0.1:8080"
    with pytest.raises(PipelineError, match=r"tag.url: 'localhost:8080' is not allowed"):
        validate(TagParams, raw | {"url": "localhost:8080"})
    with pytest.raises(PipelineError, match=r"tag.student"):
        validate(TagParams, raw | {"student": "bert"})


def stage_workdir(tmp_path, models, labelled_headlines, extra_params: dict | None = None) -> tuple:
    """A working directory with params.yaml, a headlines table and a clusters table, and the stage's argv."""
    params = (ROOT / "params.yaml").read_text()
    (tmp_path / "params.yaml").write_text(params)
    if extra_params:
        loaded = yaml.safe_load(params)
        loaded["tag"].update(extra_params)
        (tmp_path / "params.yaml").write_text(yaml.safe_dump(loaded, sort_keys=False))
    texts = [r["text"] for r in labelled_headlines] + ["Apple Shares Up 5% After Earnings Beat"]
    write_headlines(tmp_path / "headlines.parquet", texts)
    pl.DataFrame({"name": ["apple", "netflix"], "count": [3, 1], "representative": ["apple", "netflix"]}).write_parquet(
        tmp_path / "clusters.parquet"
    )
    argv = [
        "--headlines",
        "headlines.parquet",
        "--clusters",
        "clusters.parquet",
        "--fp32",
        str(models / "gliner"),
        "--export",
        str(models / "gliner_export"),
        "--cache-dir",
        "cache",
        "--answers",
        "answers",
        "--out",
        "tagged.parquet",
        "--metrics",
        "tag.json",
        "--speed",
        "tag_speed.json",
    ]
    return texts, argv


@pytest.mark.slow
def test_the_exported_student_tags_every_headline_like_its_predict_and_a_rerun_is_byte_identical(
    tiny_gliner, labelled_headlines, tmp_path, monkeypatch
):
    texts, argv = stage_workdir(tmp_path, tiny_gliner, labelled_headlines, {"batch_size": 8})
    monkeypatch.chdir(tmp_path)
    tag.main(argv)
    table = pl.read_parquet("tagged.parquet")
    predict = STUDENTS["gliner"].load(tiny_gliner / "gliner_export")
    expected = [spans for first in range(0, len(texts), 8) for spans in predict(texts[first : first + 8], 8)]
    got = table["spans"].to_list()
    assert table["text"].to_list() == texts and sum(map(len, expected)) >= 10
    assert [[{k: s[k] for k in ("start", "end", "text", "score")} for s in spans] for spans in got] == expected
    named = {s["text"]: s["name"] for spans in got for s in spans}
    assert named.get("Apple") == "apple" and all(named[m] is None for m in named if m not in ("Apple", "Netflix"))
    assert set(table["model"]) == {"gliner_export"} and set(table["model_version"]) == {
        model_version(tiny_gliner / "gliner_export")
    }
    metrics = json.loads((tmp_path / "tag.json").read_text())
    speed = json.loads((tmp_path / "tag_speed.json").read_text())
    assert (metrics["headlines"], speed["headlines_cached"], speed["cache_entries_unreadable"]) == (len(texts), 0, 0)
    assert speed["headlines_per_s"] > 0 and speed["usd_per_million_headlines"] > 0
    assert metrics["spans"] == sum(map(len, expected))
    assert table["source"].to_list() == ["test"] * len(texts)  # fetch's other columns carried along

    first = (tmp_path / "tagged.parquet").read_bytes()
    metrics_file = (tmp_path / "tag.json").read_text()
    tag.main(argv)
    assert (tmp_path / "tagged.parquet").read_bytes() == first
    assert (tmp_path / "tag.json").read_text() == metrics_file  # deterministic: git-tracked
    assert json.loads((tmp_path / "tag_speed.json").read_text())["headlines_cached"] == len(texts)
    shutil.rmtree(tmp_path / "cache")
    shutil.rmtree(tmp_path / "answers")
    tag.main(argv)
    assert (tmp_path / "tagged.parquet").read_bytes() == first, "recomputed: the same bytes"


@pytest.mark.slow
def test_the_decode_threshold_in_params_acts_where_the_student_predicts_not_where_it_trained(
    tiny_gliner, labelled_headlines, tmp_path, monkeypatch
):
    texts, argv = stage_workdir(tmp_path, tiny_gliner, labelled_headlines, {"form": "fp32", "batch_size": 8})
    loose = STUDENTS["gliner"].load(tiny_gliner / "gliner")(texts, 8)  # as trained: the training threshold
    scores = sorted(s["score"] for spans in loose for s in spans)
    threshold = round(scores[len(scores) // 2], 4)  # a stricter one that keeps about half the spans
    expected = [[s for s in spans if s["score"] >= threshold] for spans in loose]
    assert read_settings(tiny_gliner / "gliner")["threshold"] == TRAINING_THRESHOLD
    assert 0 < sum(map(len, expected)) < len(scores)

    # export writes it into the exported folder's predict settings
    servable_folder(STUDENTS["gliner"], tiny_gliner / "gliner", tmp_path / "strict", {"threshold": threshold})
    assert read_settings(tmp_path / "strict")["threshold"] == threshold
    assert STUDENTS["gliner"].load(tmp_path / "strict")(["Apple Shares Up 5% After Earnings Beat"]) is not None

    # tag applies it to the fp32 folder it loads, under a model version of its own (no cached batch is reused)
    params = yaml.safe_load((tmp_path / "params.yaml").read_text())
    params["predict"]["gliner"]["threshold"] = threshold
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    monkeypatch.chdir(tmp_path)
    tag.main(argv)
    tagged = pl.read_parquet("tagged.parquet")
    assert [[(s["start"], s["end"]) for s in spans] for spans in tagged["spans"].to_list()] == [
        [(s["start"], s["end"]) for s in spans] for spans in expected
    ]
    version = model_version(tiny_gliner / "gliner", {"threshold": threshold})
    assert set(tagged["model_version"]) == {version} and version != model_version(tiny_gliner / "gliner")
    assert model_version(tiny_gliner / "gliner", {"threshold": TRAINING_THRESHOLD}) == model_version(
        tiny_gliner / "gliner"
    )  # the folder's own setting: the version (and the demo's tagged table) as before


def test_a_served_student_that_cannot_be_reached_fails_the_stage_and_writes_nothing(
    tmp_path, monkeypatch, labelled_headlines
):
    models = tmp_path / "models"
    for form in ("gliner", "gliner_export"):
        (models / form).mkdir(parents=True)
        (models / form / "weights").write_text(form)
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    _, argv = stage_workdir(tmp_path, models, labelled_headlines, {"url": url, "max_attempts": 1, "batch_size": 8})
    monkeypatch.chdir(tmp_path)
    with pytest.raises(PipelineError, match=r"tag: 4 batch\(es\) failed at http://127.0.0.1:\d+: \{'connection': 4\}"):
        tag.main(argv)
    assert not (tmp_path / "tagged.parquet").exists() and not (tmp_path / "tag.json").exists()


@pytest.mark.slow
def test_a_served_student_tags_like_in_process_and_a_rerun_asks_only_for_the_batches_not_cached(
    tiny_gliner, labelled_headlines, tmp_path, monkeypatch
):
    server = Server(tiny_gliner / "gliner_export")  # python -m scripts.serve, as `make serve` runs it
    try:
        one_at_a_time = {"min": 1, "start": 1, "max": 1}  # so the server's model calls are tag's batches
        texts, argv = stage_workdir(
            tmp_path,
            tiny_gliner,
            labelled_headlines,
            {"batch_size": 8, "url": server.url, "concurrency": one_at_a_time},
        )
        monkeypatch.chdir(tmp_path)
        tag.main(argv)
        served = pl.read_parquet("tagged.parquet")
        metrics = json.loads((tmp_path / "tag.json").read_text())
        speed = json.loads((tmp_path / "tag_speed.json").read_text())
        assert (metrics["via"], speed["requests"], server.health()["requests"]) == ("served", 4, 4)
        predict = STUDENTS["gliner"].load(tiny_gliner / "gliner_export")
        expected = [spans for first in range(0, len(texts), 8) for spans in predict(texts[first : first + 8], 8)]
        got = served["spans"].to_list()
        assert sum(map(len, expected)) >= 10
        assert [[(s["start"], s["end"], s["text"]) for s in spans] for spans in got] == [
            [(s["start"], s["end"], s["text"]) for s in spans] for spans in expected
        ]
        assert [s["score"] for spans in got for s in spans] == pytest.approx(
            [s["score"] for spans in expected for s in spans], abs=1e-6
        )
        assert {s["name"] for spans in got for s in spans if s["text"] == "Apple"} == {"apple"}
        first = (tmp_path / "tagged.parquet").read_bytes()

        # an interrupted run: only the first batch's 8 answers reached the cache, and none was published; the rerun
        # asks for the other three batches
        (shard,) = (tmp_path / "cache").glob("answers-*.jsonl")
        shard.write_bytes(b"".join(shard.read_bytes().splitlines(keepends=True)[:8]))
        shutil.rmtree(tmp_path / "answers")
        tag.main(argv)
        assert server.health()["requests"] == 4 + 3
        assert (tmp_path / "tagged.parquet").read_bytes() == first
        tag.main(argv)
        assert server.health()["requests"] == 7, "everything cached: nothing asked"
    finally:
        server.stop()


def test_spans_are_checked_exactly_before_they_are_cached():
    text = "Apple And Visa Rise"
    assert tag.checked_spans(text, [{"start": 10, "end": 14, "score": 0.7}, {"start": 0, "end": 5, "score": 1}]) == [
        {"start": 0, "end": 5, "score": 1.0},
        {"start": 10, "end": 14, "score": 0.7},
    ]
    bad = {
        "a bool for an int": [{"start": True, "end": 5, "score": 0.5}],
        "a float offset": [{"start": 0.0, "end": 5, "score": 0.5}],
        "empty": [{"start": 3, "end": 3, "score": 0.5}],
        "outside the text": [{"start": 15, "end": 25, "score": 0.5}],
        "a score as text": [{"start": 0, "end": 5, "score": "0.5"}],
        "a bool score": [{"start": 0, "end": 5, "score": True}],
        "NaN": [{"start": 0, "end": 5, "score": float("nan")}],
        "a score over 1": [{"start": 0, "end": 5, "score": 1.5}],
        "a duplicate": [{"start": 0, "end": 5, "score": 0.5}] * 2,
        "nested": [{"start": 0, "end": 14, "score": 0.5}, {"start": 10, "end": 14, "score": 0.5}],
        "not a list": {"start": 0, "end": 5, "score": 0.5},
        "not an object": [[0, 5, 0.5]],
    }
    for spans in bad.values():
        with pytest.raises(tag.BadSpans):
            tag.checked_spans(text, spans)
        with pytest.raises(BadReply):  # a served reply holding them is retried, never cached
            tag.served_reply([text])(json.dumps([spans]).encode())


def offsets(tagged) -> list[list[tuple[int, int]]]:
    return [[(s["start"], s["end"]) for s in spans] for spans in pl.read_parquet(tagged)["spans"].to_list()]


def test_a_cached_entry_that_cannot_be_read_back_is_asked_again_not_fatal(tmp_path):
    headlines = tmp_path / "headlines.parquet"
    texts = [f"Visa Beats Estimates Q{i}" for i in range(6)]
    write_headlines(headlines, texts)
    canonical = CanonicalNames([], [], "ratio", 85, SUFFIXES)
    run_tag(tmp_path, CountingStudent(), headlines, canonical)
    first = offsets(tmp_path / "tagged.parquet")
    with AnswerCache(tmp_path / "cache") as cache:  # as an older writer or a hand edit might leave it
        cache.put({"key": tag.headline_key("v1", "in_process", texts[2]), "content": '[{"start": true, "end": 4}]'})
    again = CountingStudent()
    run, _, _ = run_tag(tmp_path, again, headlines, canonical)
    assert (again.calls, run["headlines_computed"], run["unreadable"]) == (1, 1, 1)
    assert offsets(tmp_path / "tagged.parquet") == first


def test_headlines_inserted_mid_feed_cost_only_themselves(tmp_path):
    headlines = tmp_path / "headlines.parquet"
    texts = [f"{['Visa', 'Apple', 'Tesla'][i % 3]} Beats Estimates Q{i}" for i in range(40)]
    canonical = CanonicalNames([], [], "ratio", 85, SUFFIXES)
    write_headlines(headlines, texts)
    run_tag(tmp_path, CountingStudent(), headlines, canonical, batch_size=8)
    before = dict(zip(texts, pl.read_parquet(tmp_path / "tagged.parquet")["spans"].to_list()))
    inserted = ["Nokia Slides On Outlook", "Ford Recalls Trucks", texts[6]]  # one of them tagged already
    write_headlines(headlines, texts[:17] + inserted + texts[17:])
    again = CountingStudent()
    run, counts, used = run_tag(tmp_path, again, headlines, canonical, batch_size=8)
    assert (again.calls, run["headlines_computed"], counts["headlines"], len(used)) == (1, 2, 43, 43)
    after = pl.read_parquet(tmp_path / "tagged.parquet")
    assert all(before[t] == spans for t, spans in zip(after["text"], after["spans"].to_list()) if t in before)


def test_a_hung_url_stops_tag_after_give_up_after_s_and_keeps_what_was_answered(tmp_path):
    hung = socket.socket()  # accepts connections (the kernel's backlog) and never answers
    hung.bind(("127.0.0.1", 0))
    hung.listen(64)
    url = f"http://127.0.0.1:{hung.getsockname()[1]}"
    params = validate(TagParams, TAG_PARAMS | {"url": url, "timeout_s": 0.3, "give_up_after_s": 1.0, "max_attempts": 5})
    texts = [f"Headline {i}" for i in range(40)]
    chunks = ({tag.headline_key("v1", "served", t): t for t in texts[i : i + 8]} for i in range(0, 40, 8))
    started = time.monotonic()
    try:
        with AnswerCache(tmp_path / "cache") as cache:
            todo = tag.Todo(cache, "v1", "served", lambda n: None)
            with pytest.raises(EndpointError, match=rf"tag: {url}.*nothing but timeouts .*\(tag.give_up_after_s\)"):
                tag.ask_served(todo, chunks, params, "v1", tmp_path)
    finally:
        hung.close()
    assert time.monotonic() - started < 6, "five batches of five 0.3 s attempts with backoff would take far longer"


def test_a_reply_from_another_model_version_stops_tag_and_nothing_it_said_is_cached(tmp_path, caplog):
    served = Served(lambda texts: [[] for _ in texts], headers={VERSION_HEADER: "0ther0version000"})
    params = validate(TagParams, TAG_PARAMS | {"url": served.url, "batch_size": 4})
    chunks = iter([{tag.headline_key("v1", "served", t): t for t in ("Apple Up", "Visa Down")}])
    try:
        with AnswerCache(tmp_path / "cache") as cache:
            todo = tag.Todo(cache, "v1", "served", lambda n: None)
            with pytest.raises(EndpointError, match=r"serves a student 0ther0version000, but tag.student gliner is"):
                tag.ask_served(todo, chunks, params, "v1", tmp_path / "gliner_export")
            assert len(cache) == 0
    finally:
        served.stop()
    assert "/health names no model_version" in caplog.text


@pytest.mark.slow
def test_tag_refuses_a_served_folder_other_than_the_chosen_one_before_asking_anything(
    tiny_gliner, labelled_headlines, tmp_path, monkeypatch
):
    """The server serves the export; tag.form fp32 names the saved folder: another model version."""
    server = Server(tiny_gliner / "gliner_export")  # python -m scripts.serve, as `make serve` runs it
    try:
        _, argv = stage_workdir(tmp_path, tiny_gliner, labelled_headlines, {"url": server.url, "form": "fp32"})
        monkeypatch.chdir(tmp_path)
        served = model_version(tiny_gliner / "gliner_export")
        with pytest.raises(EndpointError, match=rf"serves gliner {served}, but tag.student gliner is .*gliner \("):
            tag.main(argv)
        assert server.health()["requests"] == 0 and not (tmp_path / "tagged.parquet").exists()
    finally:
        server.stop()


def test_a_server_that_takes_smaller_batches_than_tag_batch_size_is_refused_before_any_request(tmp_path):
    params = validate(TagParams, TAG_PARAMS | {"url": "http://127.0.0.1:8080", "batch_size": 32})
    tag.check_identity({"model_version": "v1", "max_batch": 32}, params, "v1", tmp_path)
    with pytest.raises(tag.WrongModel, match=r"takes at most 16 texts a request .*set tag.batch_size to at most 16"):
        tag.check_identity({"model_version": "v1", "max_batch": 16}, params, "v1", tmp_path)
