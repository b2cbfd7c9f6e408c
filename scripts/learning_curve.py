"""Learning curve, weak vs human labels: GLiNER test F1 against training-set size, trained on the teacher's
labels and on the reviewed labels, as a queue of DVC experiments (each reruns finetune_gliner + evaluate).

  python scripts/learning_curve.py run       # queue and run the experiments (sizes x label sources)
  python scripts/learning_curve.py collect   # write metrics/learning_curve.csv from `dvc exp show`
  dvc plots show metrics/learning_curve.csv -x n -y f1   # one line per label source

Runs in your workspace's DVC; on the offline demo each experiment takes about a minute on 2 cores.
"""
from __future__ import annotations

import argparse
import csv
import json
import subprocess
from pathlib import Path

SIZES = ["100", "250", "500", "1000", "null"]  # null: every training headline
LABELS = ["llm", "reviewed"]
OUT = Path("metrics/learning_curve.csv")


def run(sizes: list[str]) -> None:
    for labels in LABELS:
        for size in sizes:
            subprocess.run(["dvc", "exp", "run", "--queue", "-S", f"finetune_gliner.train_limit={size}",
                            "-S", f"finetune_gliner.train_labels={labels}"], check=True)
    subprocess.run(["dvc", "exp", "run", "--run-all"], check=True)


def curve_rows(experiments: list[dict]) -> list[dict]:
    """(labels, n, f1) per finished experiment in `dvc exp show --json` output."""
    rows = []
    for commit in experiments:
        for exp in [commit] + [e for run in commit.get("experiments") or [] for e in run.get("revs", [])]:
            data = (exp.get("data") or {})
            params = ((data.get("params") or {}).get("params.yaml") or {}).get("data", {}).get("finetune_gliner", {})
            metrics = ((data.get("metrics") or {}).get("metrics/metrics.json") or {}).get("data", {})
            finetune = ((data.get("metrics") or {}).get("metrics/finetune_gliner.json") or {}).get("data", {})
            if "gliner" in metrics and finetune.get("train_records"):
                rows.append({"labels": params.get("train_labels", "reviewed"), "n": finetune["train_records"],
                             "f1": metrics["gliner"]["f1"], "f1_ci_low": metrics["gliner"]["f1_ci_low"],
                             "f1_ci_high": metrics["gliner"]["f1_ci_high"]})
    unique = {(r["labels"], r["n"]): r for r in rows}
    return [unique[k] for k in sorted(unique)]


def collect() -> None:
    shown = subprocess.run(["dvc", "exp", "show", "--json"], check=True, capture_output=True, text=True).stdout
    rows = curve_rows(json.loads(shown))
    with open(OUT, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["labels", "n", "f1", "f1_ci_low", "f1_ci_high"], lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    print(f"{len(rows)} points -> {OUT}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["run", "collect"])
    parser.add_argument("--sizes", nargs="*", default=SIZES)
    args = parser.parse_args()
    if args.action == "run":
        run(args.sizes)
    collect()


if __name__ == "__main__":
    main()
