"""Does a headline's tagging depend on the headlines computed with it? `tag` keeps each headline's spans under its
own text, so a headline tagged in one batch keeps what that batch gave it; this measures how far that can differ
from what it would get alone (batch 1) or in another batch, and what batch 1 costs.

For each student folder (default: models/gliner_export and models/spanmarker_export, from `make demo`), the first
--headlines headlines of the embedded sample are predicted at batch 1, at --batch-size in file order, and at
--batch-size after a seeded shuffle (other batchmates); it reports the headlines whose spans (offsets) differ from
batch 1, those whose scores move by more than 1e-6, the largest score move, and headlines/s of each. The int8 exports
scale activations per batch (ONNX Runtime dynamic quantisation), so some move; the fp32 folders should not.
Prints one JSON line; --out writes it too. All figures of one run come from one process, back to back.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

from benchmarks.student_inference import headlines
from stages.students.registry import load

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = ("models/gliner_export", "models/spanmarker_export")


def predicted(predict, texts: list[str], batch_size: int) -> tuple[list[list[dict]], float]:
    started = time.perf_counter()
    spans = [
        found
        for first in range(0, len(texts), batch_size)
        for found in predict(texts[first : first + batch_size], batch_size)
    ]
    return spans, round(len(texts) / (time.perf_counter() - started), 1)


def compare(alone: list[list[dict]], batched: list[list[dict]]) -> dict:
    offsets = sum(
        [(s["start"], s["end"]) for s in a] != [(s["start"], s["end"]) for s in b] for a, b in zip(alone, batched)
    )
    moves = [
        max((abs(x["score"] - y["score"]) for x, y in zip(a, b)), default=0.0)
        for a, b in zip(alone, batched)
        if [(s["start"], s["end"]) for s in a] == [(s["start"], s["end"]) for s in b]
    ]
    return {
        "headlines_with_other_spans": offsets,
        "headlines_with_other_scores": sum(move > 1e-6 for move in moves),
        "largest_score_move": round(max(moves, default=0.0), 6),
    }


def measure(folder: Path, texts: list[str], batch_size: int, seed: int) -> dict:
    predict = load(folder)
    predict(texts[:batch_size], batch_size)  # warm-up: the runtime builds its kernels
    alone, alone_per_s = predicted(predict, texts, 1)
    in_order, batched_per_s = predicted(predict, texts, batch_size)
    order = list(range(len(texts)))
    random.Random(seed).shuffle(order)
    shuffled_spans, _ = predicted(predict, [texts[i] for i in order], batch_size)
    shuffled: list[list[dict]] = [[] for _ in texts]
    for position, i in enumerate(order):
        shuffled[i] = shuffled_spans[position]
    return {
        "headlines": len(texts),
        "batch_1_headlines_per_s": alone_per_s,
        f"batch_{batch_size}_headlines_per_s": batched_per_s,
        "batch_1_slowdown": round(batched_per_s / alone_per_s, 2),
        f"batch_{batch_size}_vs_batch_1": compare(alone, in_order),
        f"batch_{batch_size}_shuffled_vs_in_order": compare(in_order, shuffled),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="*", type=Path, default=[ROOT / f for f in FOLDERS])
    parser.add_argument("--headlines", type=int, default=1500)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    texts = headlines(args.headlines)
    report = {folder.name: measure(folder, texts, args.batch_size, args.seed) for folder in args.folders}
    line = json.dumps(report, sort_keys=True)
    print(line)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(line + "\n")


if __name__ == "__main__":
    main()
