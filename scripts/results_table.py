"""Write the generated blocks of README.md and docs/, never typed by hand, and print them:

- README.md, results: the demo's test scores (metrics/metrics.json) with the speeds of the cost benchmark;
- README.md, stages: one row per dvc.yaml stage (its `desc:` and main outs; a foreach stage is one row);
- docs/benchmarks.md, cost: teacher vs students (metrics/teacher_vs_student_cost.json, written by
  `python -m benchmarks.teacher_vs_student_cost --out metrics/teacher_vs_student_cost.json`), when that file exists.

Every figure of those blocks is in git. A pipeline run's own speeds are not (metrics/speed/: this machine's
report, git-ignored and no DVC output), so the README's speeds are the cost benchmark's, measured on purpose;
`--print` shows this workspace's results table with this run's speeds (what `make demo` ends with), writing nothing.

Usage: python -m scripts.results_table [--check | --print]
  (--check: exit 1 if any block is stale or its markers are missing; --print: this run's table, nothing written)
Only the standard library and PyYAML.
"""

from __future__ import annotations

import argparse
import itertools
import json
import re
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
BENCHMARKS_DOC = ROOT / "docs/benchmarks.md"
COST_FILE = ROOT / "metrics/teacher_vs_student_cost.json"
METRICS_FILE = ROOT / "metrics/metrics.json"
RUN_SPEED_FILE = ROOT / "metrics/speed/evaluate.json"  # this run's report (git-ignored)
BENCHMARK_SPEEDS = (
    "Speeds: the [cost benchmark](docs/benchmarks.md#teacher-vs-student-cost) on this project's 2-core CPU, "
    "in-process (the teacher: its llama.cpp server, one request at a time)."
)
RUN_SPEEDS = "Speeds: this run, on this machine (the teacher: as it answered llm_label)."
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


def table(metrics: dict, speed: dict, speeds_note: str = BENCHMARK_SPEEDS) -> str:
    """The results table: test scores from evaluate's metrics, speeds per model ({model: {"headlines_per_s",
    "usd_per_million_headlines[_cpu]"}}, from the cost benchmark or a run's speed file)."""
    if metrics["reference"] == "human":
        lines = [
            f"Reference: human labels of {metrics['test_records']} test headlines (of "
            f"{metrics['test_headlines_in_split']} in the test split); every model, the teacher included, is "
            f"scored against them. {speeds_note}"
        ]
    else:
        lines = [
            f"Reference: the teacher's labels of {metrics['test_records']} test headlines (no human label yet), "
            f"so the students' F1 says how well they imitate the teacher; the teacher is not scored. {speeds_note}"
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
    kept = [
        f"{cost[key]}x ({NAMES[student].split()[0]})"
        for student in ("gliner", "spanmarker")
        if (key := f"{student}_export_served_over_in_process") in cost
    ]
    if kept:
        lines += ["", f"Served over HTTP, the int8 exports keep {' and '.join(kept)} of their in-process speed."]
    return "\n".join(lines)


# --- the stage table, from dvc.yaml ----------------------------------------------------------------------------

INTERPOLATION = re.compile(r"\$\{\s*([^}]+?)\s*\}")


def lookup(context: dict, expr: str):
    value = context
    for part in expr.split("."):
        if not isinstance(value, dict) or part not in value:
            raise KeyError(expr)
        value = value[part]
    return value


def render(template: str, contexts: list[dict]) -> str:
    """Interpolate ${...} in every member's context; a value the members disagree on is written {a,b}."""

    def one(match: re.Match) -> str:
        values = []
        for context in contexts:
            try:
                value = str(lookup(context, match.group(1)))
            except KeyError:
                return match.group(0)  # not ours to resolve (left as DVC would show it unresolved)
            if value not in values:
                values.append(value)
        return values[0] if len(values) == 1 else "{" + ",".join(values) + "}"

    return INTERPOLATION.sub(one, template)


def global_context(dvc: dict) -> dict:
    """params.yaml (DVC's default vars) under the vars of dvc.yaml: inline mappings and files (`file[:key]`)."""
    context: dict = {}
    sources = [ROOT / "params.yaml"] if (ROOT / "params.yaml").exists() else []
    for entry in [*sources, *dvc.get("vars", [])]:
        if isinstance(entry, dict):
            context.update(entry)
            continue
        name, _, key = str(entry).partition(":")
        loaded = yaml.safe_load((ROOT / name).read_text()) or {}
        context.update({k: loaded[k] for k in key.split(",")} if key else loaded)
    return context


def members(stage: dict, context: dict) -> tuple[list[str], list[dict], dict]:
    """(member names, one context each, the stage body) for a plain, foreach or matrix stage."""
    if "foreach" in stage:
        items = stage["foreach"]
        if isinstance(items, str):  # foreach: ${some.var}
            items = lookup(context, INTERPOLATION.fullmatch(items.strip()).group(1))
        if isinstance(items, dict):
            pairs = [(str(key), {"key": key, "item": item}) for key, item in items.items()]
        else:
            # DVC names a member by its value, or by its index when the value is a mapping or a list
            names = [str(i) if isinstance(item, (dict, list)) else str(item) for i, item in enumerate(items)]
            pairs = [(name, {"item": item}) for name, item in zip(names, items)]
        return [name for name, _ in pairs], [{**context, **extra} for _, extra in pairs], stage["do"]
    if "matrix" in stage:
        axes = stage["matrix"]
        combos = [dict(zip(axes, values)) for values in itertools.product(*axes.values())]
        body = {k: v for k, v in stage.items() if k != "matrix"}
        return ["-".join(map(str, combo.values())) for combo in combos], [{**context, "item": c} for c in combos], body
    return [], [context], stage


def out_paths(entries: list) -> list[tuple[str, dict]]:
    return [(next(iter(e)), next(iter(e.values())) or {}) if isinstance(e, dict) else (e, {}) for e in entries or []]


def main_outs(body: dict) -> list[str]:
    """The cached data and models a stage writes; a stage that writes only figures (evaluate) shows its metrics and
    outs, but for this machine's speeds (metrics/speed/)."""
    outs = out_paths(body.get("outs"))
    cached = [path for path, options in outs if options.get("cache", True) and not path.startswith("metrics/")]
    return cached or [
        path for path, _ in out_paths(body.get("metrics")) + outs if not path.startswith("metrics/speed/")
    ]


def stage_table(dvc: dict) -> str:
    context = global_context(dvc)
    lines = ["| stage | what it does | main outs |", "|---|---|---|"]
    for name, stage in dvc["stages"].items():
        names, contexts, body = members(stage, context)
        label = f"{name}@{{{','.join(names)}}}" if len(names) > 1 else f"{name}@{names[0]}" if names else name
        desc = " ".join(render(str(body.get("desc", "")), contexts).split()).replace("|", "\\|")
        outs = ", ".join(f"`{render(path, contexts)}`" for path in main_outs(body))
        lines.append(f"| `{label}` | {desc} | {outs} |")
    return "\n".join(lines)


# --- writing and checking --------------------------------------------------------------------------------------


def between(text: str, marker: str, body: str) -> str | None:
    """text with the block between <!-- marker:start --> and <!-- marker:end --> replaced; None without them."""
    start, end = f"<!-- {marker}:start -->", f"<!-- {marker}:end -->"
    pattern = re.compile(re.escape(start) + ".*?" + re.escape(end), flags=re.S)
    if not pattern.search(text):
        return None
    return pattern.sub(lambda _: f"{start}\n{body}\n{end}", text)


def benchmark_speeds() -> dict:
    """The cost benchmark's in-process speeds per model (none without its file)."""
    return json.loads(COST_FILE.read_text())["models"] if COST_FILE.exists() else {}


def run_table() -> str:
    """This workspace's results table with this run's speeds (the benchmark's where the run has none)."""
    metrics = json.loads(METRICS_FILE.read_text())
    if RUN_SPEED_FILE.exists():
        return table(metrics, json.loads(RUN_SPEED_FILE.read_text()), RUN_SPEEDS)
    return table(metrics, benchmark_speeds())


def blocks() -> list[tuple[Path, str, str]]:
    metrics = json.loads(METRICS_FILE.read_text())
    found = [
        (README, "results", table(metrics, benchmark_speeds())),
        (README, "stages", stage_table(yaml.safe_load((ROOT / "dvc.yaml").read_text()))),
    ]
    if COST_FILE.exists():
        found.append((BENCHMARKS_DOC, "cost", cost_table(json.loads(COST_FILE.read_text()))))
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true", help="exit 1 if a generated block is stale; write nothing")
    mode.add_argument("--print", action="store_true", help="print this run's results table; write nothing")
    args = parser.parse_args()
    if args.print:
        print(run_table())
        return
    texts: dict[Path, str] = {}
    problems = []
    for path, marker, body in blocks():
        text = texts.setdefault(path, path.read_text() if path.exists() else "")
        updated = between(text, marker, body)
        if updated is None:
            problems.append(f"{path.relative_to(ROOT)}: no <!-- {marker}:start --> ... <!-- {marker}:end --> block")
            continue
        if updated != text and args.check:
            problems.append(f"{path.relative_to(ROOT)}: the {marker} block is stale")
        texts[path] = updated
        if not args.check:
            print(body, end="\n\n")
    if problems:
        stale = any(problem.endswith("is stale") for problem in problems)
        sys.exit("\n".join(problems) + ("\nrun: python -m scripts.results_table" if stale else ""))
    if not args.check:
        for path, text in texts.items():
            if path.read_text() != text:
                path.write_text(text)


if __name__ == "__main__":
    main()
