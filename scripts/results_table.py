"""Write the README's results table from metrics/metrics.json and metrics/speed.json, and its cost table from
metrics/teacher_vs_student_cost.json (benchmarks/teacher_vs_student_cost.py --out), never typed by hand; print them.

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
COST_START, COST_END = "<!-- cost:start -->", "<!-- cost:end -->"
COST_FILE = ROOT / "metrics/teacher_vs_student_cost.json"
FORMS = {
    "": "fp32, in-process",
    "_served": "fp32, served over HTTP",
    "_export": "int8 ONNX export, in-process",
    "_export_served": "int8 ONNX export, served over HTTP",
}
NAMES = {
    "teacher": "Teacher LLM (labels)",
    "gliner": "GLiNER fine-tuned",
    "gliner_export": "GLiNER export (int8 ONNX)",
    "spanmarker": "SpanMarker fine-tuned",
    "spanmarker_export": "SpanMarker export (int8 ONNX)",
    "gliner_zero_shot": "GLiNER zero-shot base",
    "spanmarker_zero_shot": "SpanMarker zero-shot base",
}


def table(metrics: dict, speed: dict) -> str:
    if metrics["reference"] == "human":
        lines = [
            f"Reference: human labels of {metrics['test_records']} test headlines (of "
            f"{metrics['test_headlines_in_split']} in the test split); every model, the teacher included, is "
            f"scored against them. Speeds: this 2-core CPU (the teacher: its llama.cpp server, one request "
            f"at a time)."
        ]
    else:
        lines = [
            f"Reference: the teacher's labels of {metrics['test_records']} test headlines (no human label yet), "
            f"so the students' F1 says how well they imitate the teacher; the teacher is not scored."
        ]
    lines += [
        "",
        "| model | precision | recall | F1 [95% CI] | partial F1 | headlines/s | USD per 1M headlines |",
        "|---|---|---|---|---|---|---|",
    ]
    for key, name in NAMES.items():
        if not isinstance(metrics.get(key), dict):
            continue
        m, s = metrics[key], speed.get(key, {})
        cost = s.get("usd_per_million_headlines_cpu", s.get("usd_per_million_headlines"))
        lines.append(
            f"| {name} | {m['precision']:.3f} | {m['recall']:.3f} | {m['f1']:.3f} [{m['f1_ci_low']:.3f}, "
            f"{m['f1_ci_high']:.3f}] | {m['partial_f1']:.3f} | {s.get('headlines_per_s', '-')} | "
            f"{'-' if cost is None else f'{cost:.2f}'} |"
        )
    return "\n".join(lines)


def cost_table(cost: dict) -> str:
    models = cost["models"]
    teacher = models["teacher"]
    lines = [
        f"The same {cost['headlines']} held-out headlines for every model ({cost['f1_headlines']} of them "
        f"human-labelled, which the F1 is on); students priced at {cost['cpu_usd_per_hour']} USD/hour for this "
        f"2-core CPU, served ones by `scripts/serve.py` on the same machine at {cost['batch_size']} headlines "
        f"a request, {cost['clients']} requests in flight.",
        "",
        "| model | how it runs | F1 | headlines/s | USD per 1M headlines | times cheaper than the teacher |",
        "|---|---|---|---|---|---|",
        f"| Teacher LLM ({teacher['model']}) | llama.cpp server, one request at a time | {teacher['f1']:.3f} | "
        f"{teacher['headlines_per_s']} | {teacher['usd_per_million_headlines']:.2f} | 1 |",
    ]
    for student in ("gliner", "spanmarker"):
        for form, how in FORMS.items():
            if (m := models.get(student + form)) is not None:
                lines.append(
                    f"| {NAMES[student].split()[0]} | {how} | {m['f1']:.3f} | {m['headlines_per_s']} | "
                    f"{m['usd_per_million_headlines']:.2f} | {m['times_cheaper']:g} |"
                )
    return "\n".join(lines)


def between(text: str, start: str, end: str, body: str) -> str:
    return re.sub(re.escape(start) + ".*?" + re.escape(end), lambda _: f"{start}\n{body}\n{end}", text, flags=re.S)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    metrics = json.loads((ROOT / "metrics/metrics.json").read_text())
    speed = json.loads((ROOT / "metrics/speed.json").read_text())
    tables = [table(metrics, speed)] + ([cost_table(json.loads(COST_FILE.read_text()))] if COST_FILE.exists() else [])
    readme = (ROOT / "README.md").read_text()
    updated = between(readme, START, END, tables[0])
    if len(tables) > 1:
        updated = between(updated, COST_START, COST_END, tables[1])
    if args.check:
        sys.exit(0 if updated == readme else "README.md results table is stale: run python scripts/results_table.py")
    (ROOT / "README.md").write_text(updated)
    print("\n\n".join(tables))


if __name__ == "__main__":
    main()
