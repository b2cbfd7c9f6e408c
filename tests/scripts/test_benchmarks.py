"""Every benchmark at a tiny size, run the way a user runs it (a subprocess printing one JSON line), so none
can break unnoticed."""

import datetime as dt
import json
import subprocess
import sys

import polars as pl
import pytest

from stages.core.schema import SPANS
from tests.helpers import ROOT

FIXTURE = ROOT / "tests/data/headlines.jsonl"


def bench(module: str, *args: str, timeout: float = 120) -> dict:
    run = subprocess.run(
        [sys.executable, "-m", f"benchmarks.{module}", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout.strip().splitlines()[-1])


def test_cluster_names():
    out = bench("cluster_names", "--names", "2000", "--headlines", "5000", "--raw-rows", "100")
    assert out["names"] == 2000 and 0 < out["clusters"] < 2000 and out["pairs_per_s"] > 0
    assert out["stage_headlines"] == 5000 and 0 < out["stage_clusters"] and 0 < out["stage_sample"] < 5000


def test_llm_label_throughput():
    out = bench("llm_label_throughput", "--requests", "200", "--stream", "300", "--concurrency", "8")
    assert (out["requests"], out["streamed"], out["concurrency"]) == (200, 300, 8)
    assert min(out["headlines_per_s"], out["raw_http_per_s"], out["cached_headlines_per_s"], out["peak_rss_mb"]) > 0


def test_llm_label_capacity():
    out = bench("llm_label_capacity", "--answers-per-phase", "20")
    assert out["lost"] == 0 and out["fixed_32_lost"] == 0  # every answer reaches the cache, whatever the limit
    assert 0 < out["ratio"] and 0 < out["fixed_4_ratio"] and 0 < out["fixed_32_ratio"]
    assert out["limit"]["min"] >= 1 and out["limit"]["max"] <= 64


def test_gold_check(tmp_path):
    gold = [json.loads(line) for line in FIXTURE.read_text().splitlines()]
    teacher = [g["spans"] for g in gold]
    teacher[0] = []  # the teacher missed "Apple"
    labels = pl.DataFrame(
        {
            "date": [dt.date.fromisoformat(g["date"]) for g in gold],
            "text": [g["text"] for g in gold],
            "teacher_spans": teacher,
        },
        schema_overrides={"teacher_spans": SPANS},
    )
    labels.write_parquet(tmp_path / "l.parquet")
    (tmp_path / "m.json").write_text(
        json.dumps({"hallucinated_mentions": 0, "finish_reason": {"stop": 30}, "invalid_answers": 0})
    )
    (tmp_path / "s.json").write_text(json.dumps({"headlines_per_s": 1.5}))  # the speed report (git-ignored)
    out = bench(
        "gold_check",
        "--labels",
        str(tmp_path / "l.parquet"),
        "--metrics",
        str(tmp_path / "m.json"),
        "--speed",
        str(tmp_path / "s.json"),
        "--gold",
        str(FIXTURE),
    )
    spans = sum(len(g["spans"]) for g in gold)
    assert (out["labelled"], out["teacher_precision"], out["length_finish"]) == (30, 1.0, 0)
    assert out["teacher_recall"] == round((spans - 1) / spans, 4) and out["headlines_per_s"] == 1.5


@pytest.mark.slow
def test_case_study_scale():
    out = bench("case_study_scale", "--headlines", "2000", "--sample-size", "80", timeout=600)
    assert out["headlines"] == 2000 and out["labelled"] > 1900 and out["valid"] == out["labelled"]
    assert abs(out["sampled"] - 80) <= 0.02 * 80 and set(out["stage_s"]) == {
        "fetch",
        "llm_label",
        "cluster_sample",
        "split",
    }
    assert 0 < out["peak_rss_mb"] < 1536 and 0 <= out["client_share_of_wall"] < 1
    assert out["plan"]["requests_to_make"] == out["server"]["answered"]  # one request per distinct headline


@pytest.mark.slow
def test_serve_abuse(tiny_gliner):
    out = bench(
        "serve_abuse",
        *("--model-dir", str(tiny_gliner / "gliner_export"), "--half-open", "40", "--seconds", "4", "--rate", "5"),
        *("--max-connections", "16", "--read-timeout-s", "2"),
        timeout=300,
    )
    normal, attackers, connections = out["normal"], out["half_open"], out["server"]["connections"]
    assert normal["sent"] >= 10 and normal["answered"] + normal["failed"] == normal["sent"]
    assert normal["answered"] >= normal["sent"] // 2 and 0 < normal["p50_ms"] <= normal["p99_ms"]
    assert attackers["connections"] >= 40 and attackers["refused"] + attackers["dropped"] > 0
    assert connections["max"] == 16 and connections["refused"] + connections["evicted"] + connections["timed_out"] > 0
    assert out["server_log_lines"] <= 10 and not any("Traceback" in line for line in out["server_log"])


@pytest.mark.slow
def test_batch_independence(tiny_gliner):
    out = bench(
        "batch_independence",
        str(tiny_gliner / "gliner_export"),
        str(tiny_gliner / "gliner"),
        "--headlines",
        "24",
        "--batch-size",
        "8",
    )
    exported, saved = out["gliner_export"], out["gliner"]
    assert (
        exported["headlines"] == 24
        and min(exported["batch_1_headlines_per_s"], exported["batch_8_headlines_per_s"]) > 0
    )
    for report in (exported["batch_8_vs_batch_1"], exported["batch_8_shuffled_vs_in_order"]):
        assert 0 <= report["headlines_with_other_spans"] + report["headlines_with_other_scores"] <= 24
        assert 0 <= report["largest_score_move"] <= 1
    assert saved["batch_8_vs_batch_1"]["headlines_with_other_spans"] == 0, (
        "fp32 predictions do not depend on batchmates"
    )


@pytest.mark.slow
def test_link_real_feed(tiny_gliner, tmp_path):
    """On 200 of the sample's headlines with their symbol column (those without one left out), the tiny student,
    a 2013 cutoff."""
    lines = (ROOT / "data/sample/headlines.csv").read_text().splitlines()[:201]
    (tmp_path / "feed.csv").write_text("\n".join(lines) + "\n")
    (tmp_path / "verdicts.csv").write_text("key,start,end,symbol,correct,note\n")
    out = bench(
        "link_real_feed",
        str(tmp_path / "feed.csv"),
        "--model",
        str(tiny_gliner / "gliner"),
        "--learn-until",
        "2012-12-31",
        "--evaluate-from",
        "2013-01-01",
        "--sample",
        "5",
        "--verdicts",
        str(tmp_path / "verdicts.csv"),
        "--out",
        str(tmp_path / "link.json"),
        timeout=300,
    )
    assert out["checked"] == 0 and out["precision"] is None  # no verdicts: no precision, not a made-up one
    report = json.loads((tmp_path / "link.json").read_text())
    assert set(report["variants"]) == {"master", "master_learnt_aliases", "master_learnt_aliases_counts_only"}
    evaluated = report["variants"]["master"]["evaluation_period"]
    assert evaluated["headlines"] == sum(1 for line in lines[1:] if line >= "2013" and not line.endswith(","))
    assert 0 <= evaluated["hits"] <= evaluated["headlines"] and report["watch"]["cutoff"] == "2012-12-31"
