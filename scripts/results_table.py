"""Write the README's results table from metrics/metrics.json and metrics/speed.json (never typed by hand), and print it.

Usage: python scripts/results_table.py [--check]   (--check: exit 1 if README.md is not up to date)
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
START, END = "<!-- results:start -->", "<!-- results:end -->"
NAMES = {"teacher": "Teacher LLM (labels)", "gliner": "GLiNER fine-tuned", "gliner_export": "GLiNER export (int8 ONNX)",
         "spanmarker": "SpanMarker fine-tuned", "spanmarker_export": "SpanMarker export (int8 ONNX)",
         "gliner_zero_shot": "GLiNER zero-shot base", "spanmarker_zero_shot": "SpanMarker zero-shot base"}


def table(metrics: dict, speed: dict) -> str:
    if metrics["reference"] == "human":
        lines = [f"Reference: human labels of {metrics['test_records']} test headlines (of "
                 f"{metrics['test_headlines_in_split']} in the test split); every model, the teacher included, is "
                 f"scored against them. Speeds: this 2-core CPU (the teacher: its llama.cpp server, one request "
                 f"at a time)."]
    else:
        lines = [f"Reference: the teacher's labels of {metrics['test_records']} test headlines (no human label yet), "
                 f"so the students' F1 says how well they imitate the teacher; the teacher is not scored."]
    lines += ["", "| model | precision | recall | F1 [95% CI] | partial F1 | headlines/s | USD per 1M headlines |",
              "|---|---|---|---|---|---|---|"]
    for key, name in NAMES.items():
        if not isinstance(metrics.get(key), dict):
            continue
        m, s = metrics[key], speed.get(key, {})
        cost = s.get("usd_per_million_headlines_cpu", s.get("usd_per_million_headlines"))
        lines.append(f"| {name} | {m['precision']:.3f} | {m['recall']:.3f} | {m['f1']:.3f} [{m['f1_ci_low']:.3f}, "
                     f"{m['f1_ci_high']:.3f}] | {m['partial_f1']:.3f} | {s.get('headlines_per_s', '-')} | "
                     f"{'-' if cost is None else f'{cost:.2f}'} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    metrics = json.loads((ROOT / "metrics/metrics.json").read_text())
    speed = json.loads((ROOT / "metrics/speed.json").read_text())
    readme = (ROOT / "README.md").read_text()
    updated = re.sub(re.escape(START) + ".*?" + re.escape(END), f"{START}\n{table(metrics, speed)}\n{END}", readme,
                     flags=re.S)
    if args.check:
        sys.exit(0 if updated == readme else "README.md results table is stale: run python scripts/results_table.py")
    (ROOT / "README.md").write_text(updated)
    print(table(metrics, speed))


if __name__ == "__main__":
    main()
