"""The llm_label stage as users run it (a subprocess in a project directory) against a real local server."""

import datetime as dt
import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import polars as pl
import pytest
import yaml

from stages import llm_label
from stages.core.errors import PipelineError
from stages.core.params import load_params
from stages.core.schema import HEADLINE_COLUMNS
from stages.core.spans import locate
from stages.core.stage_params import Endpoint, LlmLabelParams
from stages.http.answer_cache import AnswerCache
from stages.teacher import labels as teacher_labels
from stages.teacher.endpoint import endpoint_token
from stages.teacher.labels import consensus_row
from stages.teacher.local_server import free_port
from tests.helpers import LABELLED, ROOT, FakeTeacher, project, sh, shipped_params

FIXTURE = [json.loads(line) for line in (ROOT / "tests/data/headlines.jsonl").read_text().splitlines()]


def fixed(n: int) -> dict:
    return {"min": n, "start": n, "max": n}


def fetched(n: int) -> pl.DataFrame:
    """n headlines as fetch writes them: the fixture's, then numbered variants of them."""
    rows = [FIXTURE[i % len(FIXTURE)] for i in range(n)]
    texts = [r["text"] + (f" #{i // len(FIXTURE)}" if i >= len(FIXTURE) else "") for i, r in enumerate(rows)]
    return pl.DataFrame(
        {
            "id": [f"h{i:03d}" for i in range(n)],
            "text": texts,
            "date": [dt.date.fromisoformat(r["date"]) for r in rows],
            "source": ["fixture"] * n,
        },
        schema=HEADLINE_COLUMNS,
    )


def label_project(directory: Path, server, **overrides) -> Path:
    """A directory with 200 fetched headlines, the prompt and params pointing at the test server."""
    section = shipped_params()["llm_label"]
    section.update({"limit": 40, "concurrency": fixed(4), "max_attempts": 2, "timeout_s": 10, **overrides})
    section["endpoint"].update(base_url=server.url, response_format="none")
    tables = {"data/fetched/headlines.parquet": fetched(200)}
    return project(directory, {"llm_label": section}, copies=[section["prompt_file"]], tables=tables)


def figures(directory: Path) -> dict:
    """llm_label's metrics file (labels, tokens) and speed file (latencies, endpoint time, cost), as one dict."""
    metrics = json.loads((directory / "metrics/llm_label.json").read_text())
    speed = json.loads((directory / "metrics/speed/llm_label.json").read_text())
    assert not set(metrics) & set(speed), "each figure in one file"
    return metrics | speed


def label(directory: Path, *args: str, wait: bool = True, env_vars: dict[str, str] | None = None, **popen):
    command = [
        sys.executable,
        "-m",
        "stages.llm_label",
        "--headlines",
        "data/fetched/headlines.parquet",
        "--cache-dir",
        "data/llm_cache",
        "--answers",
        "data/labels/llm_answers",
        "--out",
        "data/labels/llm_labels.parquet",
        "--metrics",
        "metrics/llm_label.json",
        "--speed",
        "metrics/speed/llm_label.json",
        "--concurrency-plot",
        "metrics/llm_label_concurrency.csv",
        *args,
    ]
    env = dict(os.environ, PYTHONPATH=str(ROOT), **(env_vars or {}))
    if not wait:
        return subprocess.Popen(
            command, cwd=directory, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, **popen
        )
    return subprocess.run(command, cwd=directory, env=env, capture_output=True, text=True, timeout=300, **popen)


def cached_lines(directory: Path) -> int:
    return sum(len(p.read_text().splitlines()) for p in (directory / "data/llm_cache").glob("answers-*.jsonl"))


def labels(directory: Path) -> pl.DataFrame:
    return pl.read_parquet(directory / "data/labels/llm_labels.parquet")


def edit(directory: Path, change) -> None:
    params = yaml.safe_load((directory / "params.yaml").read_text())
    change(params["llm_label"])
    (directory / "params.yaml").write_text(yaml.safe_dump(params))


def test_plan_calls_nothing_and_counts_what_is_missing(tmp_path, fake_teacher):
    directory = label_project(tmp_path, fake_teacher, cost={"usd_per_hour": 8.0})
    run = label(directory, "--plan")
    assert run.returncode == 0, run.stderr
    estimate = json.loads(run.stdout)
    assert estimate["requests_to_make"] == 40 and estimate["estimated_cost_usd"] > 0
    assert sum(fake_teacher.requests.values()) == 0
    (checked,) = [line for line in run.stderr.splitlines() if "llm_label: preflight:" in line]  # one line
    assert f"preflight: {fake_teacher.url} reachable (GET /v1/models: HTTP 200 in " in checked
    assert checked.endswith("lists no model: each answer's model is checked instead")
    assert fake_teacher.models_requests == 1


def test_plan_prints_a_failed_check_as_one_line_and_still_estimates(tmp_path, fake_teacher):
    """Each way the preflight fails (nothing listening, the token refused, another model served) is one line
    before the estimate, and the plan exits 1; no answer is asked for."""
    llama = FakeTeacher(served_model="meta-llama/Llama-3.1-70B-Instruct").start()
    fake_teacher.token = "right-token"
    dead = f"http://127.0.0.1:{free_port()}"
    directory = label_project(tmp_path, fake_teacher)
    expected = {
        dead: f"llm_label: cannot reach {dead} (connection refused: nothing listens there); check llm_label.endpoint",
        fake_teacher.url: f"llm_label: {fake_teacher.url} answered HTTP 401 at {fake_teacher.url}/v1/models: the "
        "token in $HF_TOKEN was refused; put a valid token for this endpoint in HF_TOKEN",
        llama.url: f"llm_label: {llama.url} serves meta-llama/Llama-3.1-70B-Instruct, but llm_label.endpoint.model "
        "is 'SmolLM2-135M-Instruct-Q4_1'; set it to the served id",
    }
    try:
        for url, line in expected.items():
            edit(directory, lambda section, url=url: section["endpoint"].update(base_url=url))
            run = label(directory, "--plan", env_vars={"HF_TOKEN": "wrong-token"})
            assert run.returncode == 1 and "Traceback" not in run.stderr, run.stderr
            assert json.loads(run.stdout)["requests_to_make"] == 40
            (failed,) = [entry for entry in run.stderr.splitlines() if line in entry]  # one line
            assert " ERROR " in failed and "preflight:" not in run.stderr and "wrong-token" not in run.stderr
        assert sum(fake_teacher.requests.values()) == sum(llama.requests.values()) == 0
    finally:
        llama.stop()


def test_a_dead_endpoint_fails_the_stage_in_seconds_with_one_line(tmp_path):
    """Issue 29: against http://127.0.0.1:9/v1, 19 headlines took 2 min 37 s (95 calls, 76 retries) to fail."""
    dead = f"http://127.0.0.1:{free_port()}/v1"  # a free port nobody listens on
    directory = label_project(tmp_path, SimpleNamespace(url=dead), limit=19, max_attempts=5)
    started = time.monotonic()
    run = label(directory)
    elapsed = time.monotonic() - started
    assert run.returncode == 1 and "Traceback" not in run.stderr, run.stderr
    assert run.stderr.strip().splitlines()[-1] == (
        f"llm_label: cannot reach {dead} (connection refused: nothing listens there); check "
        f"llm_label.endpoint.base_url and that the endpoint is running"
    )
    assert run.stderr.count("cannot reach") == 1 and elapsed < 10, elapsed
    assert cached_lines(directory) == 0 and not (directory / "data/labels/llm_labels.parquet").exists()


def test_a_refused_token_stops_the_stage_before_any_request(tmp_path, fake_teacher):
    fake_teacher.token = "right-token"
    directory = label_project(tmp_path, fake_teacher)  # token_env: HF_TOKEN, as shipped
    run = label(directory, env_vars={"HF_TOKEN": "wrong-token"})
    assert run.returncode == 1 and "Traceback" not in run.stderr, run.stderr
    assert run.stderr.strip().splitlines()[-1] == (
        f"llm_label: {fake_teacher.url} answered HTTP 401 at {fake_teacher.url}/v1/models: the token in $HF_TOKEN "
        f"was refused; put a valid token for this endpoint in HF_TOKEN (the variable llm_label.endpoint.token_env "
        f"names)"
    )
    assert "wrong-token" not in run.stderr and sum(fake_teacher.requests.values()) == 0
    run = label(directory, env_vars={"HF_TOKEN": "right-token"})
    assert run.returncode == 0, run.stderr
    assert sum(fake_teacher.requests.values()) == 40 and fake_teacher.models_requests == 2


def test_added_headlines_ask_only_for_new_ones_and_metrics_account(tmp_path, fake_teacher):
    directory = label_project(
        tmp_path, fake_teacher, cost={"usd_per_million_prompt_tokens": 1.0, "usd_per_million_completion_tokens": 2.0}
    )
    assert label(directory).returncode == 0
    first = labels(directory)
    edit(directory, lambda section: section.update(limit=60))
    assert label(directory).returncode == 0
    assert sum(fake_teacher.requests.values()) == 60 and max(fake_teacher.requests.values()) == 1
    assert set(first["id"]) <= set(labels(directory)["id"])
    assert labels(directory).columns == [
        *HEADLINE_COLUMNS,
        "valid",
        "error",
        "raw_answer",
        "finish_reason",
        "mentions",
        "names",
        "teacher_spans",
        "hallucinated",
        "agreement",
    ]
    metrics = figures(directory)
    assert metrics["headlines"] == 60 and metrics["answers"] == 60
    assert (metrics["prompt_tokens"], metrics["completion_tokens"]) == (6000, 1200)
    assert metrics["estimated_cost_usd"] == pytest.approx(0.006 + 0.0024)
    assert metrics["finish_reason"] == {"stop": 60} and metrics["latency_s"]["p95"] is not None
    assert metrics["usd_per_million_headlines"] == pytest.approx((0.006 + 0.0024) / 60 * 1e6)


def test_a_concurrency_change_with_nothing_to_ask_changes_no_metric(tmp_path, fake_teacher):
    fake_teacher.delay_s = 0.05
    directory = label_project(tmp_path, fake_teacher, concurrency=fixed(2), cost={"usd_per_hour": 8.0})
    assert label(directory).returncode == 0
    before = figures(directory)
    edit(directory, lambda section: section.update(concurrency={"min": 1, "start": 16, "max": 64}))
    assert label(directory).returncode == 0
    assert sum(fake_teacher.requests.values()) == 40
    assert figures(directory) == before
    metrics = before
    endpoint_s = metrics["latency_s"]["total"] / 2  # each answer held half the endpoint (concurrency 2)
    assert metrics["endpoint_hours"] == pytest.approx(endpoint_s / 3600, abs=1e-4)
    assert metrics["headlines_per_s"] == pytest.approx(40 / endpoint_s, rel=0.01)


def test_a_remote_endpoint_without_its_token_fails_naming_the_variable():
    remote = Endpoint(
        base_url="https://x.endpoints.huggingface.cloud", model="m", token_env="MY_TEACHER_TOKEN", response_format="tgi"
    )
    with pytest.raises(PipelineError, match="MY_TEACHER_TOKEN"):
        endpoint_token(remote, {})
    assert endpoint_token(remote, {"MY_TEACHER_TOKEN": "t"}) == "t"
    for local in ("local", "http://127.0.0.1:8080", "http://localhost:8000"):
        assert endpoint_token(remote.model_copy(update={"base_url": local}), {}) is None
    assert endpoint_token(remote.model_copy(update={"token_env": None}), {}) is None


def test_failed_headlines_fail_the_stage_keep_answers_and_are_retried_alone(tmp_path, fake_teacher):
    directory = label_project(tmp_path, fake_teacher)
    assert label(directory).returncode == 0  # a first run tells which 40 headlines are selected
    selected = sorted(labels(directory)["text"])
    fake_teacher.requests.clear()
    for path in (directory / "data/llm_cache").glob("*.jsonl"):
        path.unlink()
    shutil.rmtree(directory / "data/labels/llm_answers")  # the run's published answers would seed the store again
    broken = selected[:3]
    fake_teacher.script = {h: ["500", "500"] for h in broken}
    run = label(directory)
    assert run.returncode != 0 and "3 headline(s) failed: http_500 x3 after 2 attempts each" in run.stderr
    flagged = labels(directory).filter(pl.col("error").str.starts_with("request_failed"))
    assert sorted(flagged["text"]) == broken and cached_lines(directory) == 37
    before = sum(fake_teacher.requests.values())
    run = label(directory)
    assert run.returncode == 0, run.stderr
    assert sum(fake_teacher.requests.values()) - before == 3  # only the failed ones are asked again
    assert labels(directory)["valid"].all()


def test_kill_9_mid_run_loses_no_answer_and_resume_makes_exactly_the_missing_calls(tmp_path, fake_teacher):
    fake_teacher.delay_s = 0.05
    directory = label_project(tmp_path, fake_teacher, limit=200, concurrency=fixed(2))
    process = label(directory, wait=False)
    deadline = time.monotonic() + 120
    while cached_lines(directory) < 60 and time.monotonic() < deadline:
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    answered_before_kill = cached_lines(directory)
    calls_before_resume = sum(fake_teacher.requests.values())
    assert 60 <= answered_before_kill < 200

    run = label(directory)
    assert run.returncode == 0, run.stderr
    resumed_calls = sum(fake_teacher.requests.values()) - calls_before_resume
    assert resumed_calls == 200 - answered_before_kill
    assert labels(directory).height == 200 and labels(directory)["valid"].all()


def test_self_consistency_asks_n_samples_and_records_agreement(tmp_path, fake_teacher):
    directory = label_project(tmp_path, fake_teacher, limit=10, self_consistency={"samples": 3, "temperature": 0.7})
    assert label(directory).returncode == 0
    assert sum(fake_teacher.requests.values()) == 30
    temperatures = {b["temperature"] for b in fake_teacher.bodies}
    seeds = {b["seed"] for b in fake_teacher.bodies}
    assert temperatures == {0.7} and seeds == {0, 1, 2}
    metrics = figures(directory)
    assert metrics["self_consistency_agreement"] == 1.0  # this teacher answers the same every time
    # per headline, not per answer: each of the 10 headlines cost three answers
    assert (metrics["headlines"], metrics["answers"]) == (10, 30)
    assert metrics["headlines_per_s"] == pytest.approx(10 / (metrics["latency_s"]["total"] / 4), rel=0.01)


def test_consensus_keeps_spans_a_majority_agrees_on(monkeypatch):
    calls = []
    monkeypatch.setattr(teacher_labels, "locate", lambda *args: calls.append(args) or locate(*args))

    def answer(names):
        return {
            "content": json.dumps({"companies": [{"mention": n, "name": n} for n in names]}),
            "finish_reason": "stop",
        }

    text = "Apple And Tesla Rally As Visa Slips"
    row = consensus_row(
        text, [answer(["Apple", "Tesla"]), answer(["Apple", "Nvidia"]), answer(["Apple", "Visa"])], None, "all"
    )
    assert [s["text"] for s in row.teacher_spans] == ["Apple"]
    assert (row.mentions, row.names) == (["Apple"], ["Apple"])
    assert row.hallucinated == ["Nvidia"] and row.agreement == pytest.approx(1 / 3) and row.valid
    assert len(calls) == 3  # each answer is aligned once
    failed = consensus_row(text, [answer(["Apple"]), None, answer(["Apple"])], "http_500", "all")
    assert failed.valid is False and failed.error == "request_failed: http_500"


def test_bad_params_stop_the_stage_before_any_request(tmp_path, fake_teacher):
    directory = label_project(tmp_path, fake_teacher)
    params = yaml.safe_load((directory / "params.yaml").read_text())
    params["llm_label"]["concurency"] = params["llm_label"].pop("concurrency")
    params["llm_label"]["occurrences"] = "firts"
    (directory / "params.yaml").write_text(yaml.safe_dump(params))
    run = label(directory)
    assert run.returncode == 1 and sum(fake_teacher.requests.values()) == 0
    problems = run.stderr.strip().splitlines()[-3:]
    assert problems == [
        "params.yaml: llm_label.concurrency: missing (params.yaml must set it)",
        "params.yaml: llm_label.occurrences: 'firts' is not allowed: Input should be 'all' or 'first'",
        "params.yaml: llm_label.concurency: unknown key (a typo? allowed keys are the ones in the shipped params.yaml)",
    ], problems
    assert not (directory / "data/labels").exists()


def test_a_full_disk_stops_the_stage_with_one_line_and_every_answer_written_is_kept(tmp_path, fake_teacher):
    directory = label_project(tmp_path, fake_teacher)

    def small_disk():  # no file may pass 6 kB: the answer shard reaches it after about 15 answers
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (6000, 6000))

    run = label(directory, preexec_fn=small_disk)
    assert run.returncode == 1 and "Traceback" not in run.stderr, run.stderr
    assert re.fullmatch(
        r"llm_label: cannot write the answer cache: \[Errno \d+\] File too large: '\S+answers-\S+"
        r"\.jsonl'; every answer received before it is cached, so once that is fixed `dvc repro` "
        r"asks only for the rest",
        run.stderr.strip().splitlines()[-1],
    )
    cached, asked = cached_lines(directory), sum(fake_teacher.requests.values())
    assert 0 < cached < 40 and asked <= cached + 4  # it stopped asking: only the 4 in flight found no room
    assert AnswerCache(directory / "data/llm_cache").skipped == 0  # no line was left half written
    assert label(directory).returncode == 0
    assert sum(fake_teacher.requests.values()) - asked == 40 - cached


def test_an_old_cache_is_reused_and_a_param_no_request_carries_asks_nothing(tmp_path, fake_teacher, monkeypatch):
    directory = label_project(tmp_path, fake_teacher)
    assert label(directory).returncode == 0
    before, metrics = labels(directory), (directory / "metrics/llm_label.json").read_text()
    # the same answers as the code before issue 19 filed them: its keys, one numbered shard
    monkeypatch.chdir(directory)
    (spec,) = llm_label.request_specs(load_params(LlmLabelParams))
    legacy = {spec.cache_key(text): spec.legacy_cache_key(text) for text in before["text"]}
    shards = sorted((directory / "data/llm_cache").glob("answers-*.jsonl"))
    lines = [json.loads(line) for shard in shards for line in shard.read_text().splitlines()]
    for shard in shards:
        shard.unlink()
    (directory / "data/llm_cache/answers-00000.jsonl").write_text(
        "".join(json.dumps({**line, "key": legacy[line["key"]]}) + "\n" for line in lines)
    )

    assert label(directory).returncode == 0
    assert sum(fake_teacher.requests.values()) == 40
    assert labels(directory).equals(before) and (directory / "metrics/llm_label.json").read_text() == metrics
    edit(directory, lambda section: section["generation"].update(max_tokens=256))  # extractive: the schema sets it
    assert label(directory).returncode == 0
    assert sum(fake_teacher.requests.values()) == 40 and labels(directory).equals(before)


def test_unreadable_cache_lines_are_reported_and_asked_again(tmp_path, fake_teacher):
    directory = label_project(tmp_path, fake_teacher)
    assert label(directory).returncode == 0
    (shard,) = (directory / "data/llm_cache").glob("answers-*.jsonl")
    lines = shard.read_text().splitlines(keepends=True)
    shard.write_text("".join([lines[0], lines[1][:30] + "\n", *lines[2:]]))  # a middle line corrupted
    run = label(directory)
    assert run.returncode == 0 and sum(fake_teacher.requests.values()) == 40, "the published copy restored it"
    assert "1 answer(s) of data/labels/llm_answers added to the store" in run.stderr
    for path in (directory / "data/llm_cache").glob("answers-*.jsonl"):
        path.unlink()  # the store as the first run left it, and no published copy
    shutil.rmtree(directory / "data/labels/llm_answers")
    shard.write_text("".join([lines[0], lines[1][:30] + "\n", *lines[2:]]))
    run = label(directory)
    assert run.returncode == 0 and sum(fake_teacher.requests.values()) == 41
    assert f"skipped 1 unreadable line(s) of the answer cache (the first: data/llm_cache/{shard.name}:2)" in run.stderr
    assert json.loads((directory / "metrics/llm_label.json").read_text())["cache_lines_skipped"] == 1


def test_plan_runs_on_a_fresh_clone_the_way_the_readme_runs_it(repo, fake_teacher):
    """`make plan` is `dvc repro fetch`, `python -m stages.fetch --check-dates` then `python -m stages.llm_label
    --plan`: the dates and the endpoint checked (a line each), then requests, tokens, minutes, USD."""
    dry = subprocess.run(["make", "-n", "plan"], cwd=ROOT, capture_output=True, text=True).stdout
    assert "dvc repro fetch" in dry and "python -m stages.llm_label --plan" in dry
    assert dry.index("dvc repro fetch") < dry.index("python -m stages.fetch --check-dates") < dry.index("--plan")
    sh(repo, "dvc", "repro", "fetch")
    dates = sh(repo, "python", "-m", "stages.fetch", "--check-dates")
    assert re.search(r"fetch: split.ranges hold train [\d,]+, valid [\d,]+, test [\d,]+ of the 1,500 fetched", dates)
    output = sh(repo, "python", "-m", "stages.llm_label", "--plan")
    assert f"llm_label: preflight: {fake_teacher.url} reachable (GET /v1/models: HTTP 200 in " in output
    plan = json.loads(output[output.index("{") : output.rindex("}") + 1])
    assert plan["requests_to_make"] == LABELLED and plan["estimated_prompt_tokens"] > 0
    assert plan["estimated_minutes"] > 0 and "estimated_cost_usd" in plan
    assert sum(fake_teacher.requests.values()) == 0 and not (repo / "data/labels/llm_labels.parquet").exists()
    run = subprocess.run([sys.executable, "-m", "stages.llm_label"], cwd=repo, capture_output=True, text=True)
    assert (
        run.returncode == 2
        and "--headlines, --cache-dir, --answers, --out, --metrics, --speed, --concurrency-plot required" in run.stderr
    )


def test_batches_give_the_table_one_batch_gives_and_a_repeated_text_is_asked_once(tmp_path, fake_teacher, monkeypatch):
    """The feed is read, asked and written BATCH_ROWS headlines at a time; a headline text that comes back in a later
    batch (another date) is asked once, and the plan counts it once."""
    directory = label_project(tmp_path, fake_teacher, limit=None)
    repeated = fetched(30).with_columns(id=pl.format("r{}", pl.col("id")), date=pl.lit(dt.date(2019, 1, 1)))
    pl.concat([fetched(200), repeated]).sort("id").write_parquet(directory / "data/fetched/headlines.parquet")
    monkeypatch.chdir(directory)
    monkeypatch.setattr(llm_label, "BATCH_ROWS", 7)
    command = [
        "--headlines",
        "data/fetched/headlines.parquet",
        "--cache-dir",
        "data/llm_cache",
        "--answers",
        "data/labels/llm_answers",
        "--out",
        "b.parquet",
        "--metrics",
        "b.json",
        "--speed",
        "b_speed.json",
        "--concurrency-plot",
        "b.csv",
    ]
    params = load_params(LlmLabelParams)
    total, batches = llm_label.headline_batches(Path("data/fetched/headlines.parquet"), None, 0)
    with AnswerCache("data/llm_cache") as cache:
        assert (total, llm_label.count_missing(llm_label.request_specs(params), batches, cache)) == (230, (230, 200))
    llm_label.main(command)
    assert sum(fake_teacher.requests.values()) == 200 and max(fake_teacher.requests.values()) == 1
    monkeypatch.setattr(llm_label, "BATCH_ROWS", 10_000)
    at = command.index("--out") + 1
    llm_label.main([*command[:at], "one.parquet", *command[at + 1 :]])
    batched, whole = pl.read_parquet("b.parquet"), pl.read_parquet("one.parquet")
    assert batched.height == 230 and batched.equals(whole) and batched["id"].is_sorted()


def test_a_budget_stops_the_stage_mid_feed_and_a_larger_one_buys_only_the_rest(tmp_path, fake_teacher):
    """Issue 33: the fake teacher's answers take 100 prompt tokens, 0.1 USD each at these prices; a 1.05 USD cap
    buys 10 of the 40 (the first one learns the price), stops before the 11th and says what the rest costs."""
    prices = {"usd_per_hour": None, "usd_per_million_prompt_tokens": 1000.0, "usd_per_million_completion_tokens": 0.0}
    directory = label_project(tmp_path, fake_teacher, cost=prices, budget_usd=1.05)
    run = label(directory)
    assert run.returncode == 1 and "Traceback" not in run.stderr
    assert run.stderr.strip().splitlines()[-1] == (
        "llm_label: stopped before passing llm_label.budget_usd 1.05: the answers used cost ~1.0000 USD, 10 of them "
        "bought by this run and cached; 30 requests remain, ~3.0000 USD more at ~0.100000 USD an answer. Raise "
        "llm_label.budget_usd (null: no cap) and `dvc repro`: nothing bought is asked again"
    )
    assert cached_lines(directory) == 10 and sum(fake_teacher.requests.values()) == 10
    assert not (directory / "data/labels/llm_labels.parquet").exists()  # no half table

    plan = label(directory, "--plan")
    assert json.loads(plan.stdout)["budget_usd"] == 1.05 and json.loads(plan.stdout)["estimate_over_budget"]

    edit(directory, lambda section: section.update(budget_usd=4.0))  # exactly what all 40 cost
    run = label(directory)
    assert run.returncode == 0, run.stderr
    assert sum(fake_teacher.requests.values()) == 40  # 0 answers bought twice
    assert cached_lines(directory) == 40 and labels(directory).height == 40

    edit(directory, lambda section: section.update(budget_usd=1.0))  # below what the cached answers cost
    before = sum(fake_teacher.requests.values())
    assert label(directory).returncode == 0 and sum(fake_teacher.requests.values()) == before  # nothing to buy
