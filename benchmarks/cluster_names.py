"""Name clustering at scale: our chunked, length-pruned clustering vs a raw rapidfuzz cdist pass.

Generates --names distinct, realistic company-name variants (seeded: base names, legal suffixes, casing,
typos), clusters them with stages.cluster_sample.cluster_names (ratio, threshold 85), and times a raw
process.cdist over a row subset of the same all-pairs matrix (the full N x N matrix does not fit).
Then runs the whole cluster_sample core on --headlines synthetic teacher labels.
Prints one JSON line. Usage: python -m benchmarks.cluster_names [--names 100000] [--headlines 900000]
(the test suite runs it with --names 2000 --headlines 5000 --raw-rows 100)
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import time
from pathlib import Path

import numpy as np
import polars as pl
from rapidfuzz import fuzz, process

from stages.cluster_sample import cluster_names, cluster_table, headline_names, sample
from stages.core.params import load_params
from stages.core.stage_params import ClusterSampleParams

ROOT = Path(__file__).resolve().parents[1]

SYLLABLES = [
    "ap",
    "ple",
    "tes",
    "la",
    "mi",
    "cro",
    "soft",
    "gen",
    "er",
    "al",
    "mo",
    "tors",
    "bank",
    "cor",
    "tech",
    "no",
    "vi",
    "sa",
    "tar",
    "get",
    "or",
    "acle",
    "am",
    "zon",
    "nex",
    "tra",
    "lum",
    "en",
    "dyn",
    "ix",
]
WORDS = [
    "Global",
    "Capital",
    "Energy",
    "Systems",
    "Pharma",
    "Foods",
    "Bank",
    "Airlines",
    "Motors",
    "Networks",
    "Health",
    "Holdings",
    "Group",
    "Partners",
    "Resources",
    "Digital",
    "Semiconductor",
    "Media",
]
SUFFIXES = ["", "", "", " Inc", " Inc.", " Corp", " Corporation", " Ltd", " plc", " Co", " Group", " Holdings"]
# the case study's sample: 5% of each cluster
PARAMS = load_params(ClusterSampleParams, ROOT / "params.yaml").model_copy(  # the shipped section: new keys come along
    update={"cluster_fraction": 0.05, "no_company_fraction": 0.05, "invalid_fraction": 0.05, "sample_size": None}
)


def company_names(n: int, seed: int = 0) -> list[str]:
    """At least n names that stay distinct after case folding."""
    rng = random.Random(seed)
    names: set[str] = set()
    folded: set[str] = set()
    while len(folded) < n:
        base = "".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 4))).capitalize()
        if rng.random() < 0.5:
            base += " " + " ".join(rng.sample(WORDS, rng.randint(1, 2)))
        for _ in range(rng.randint(1, 6)):  # variants of one company: suffixes, casing, typos
            name = base + rng.choice(SUFFIXES)
            if rng.random() < 0.3:
                i = rng.randrange(len(name))
                name = name[:i] + rng.choice("aeiou") + name[i + 1 :]
            names.add(name.upper() if rng.random() < 0.05 else name)
            folded.add(" ".join(name.casefold().split()))
    return sorted(names)


def synthetic_labels(names: list[str], headlines: int, seed: int = 0) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    weights = 1 / np.arange(1, len(names) + 1)  # Zipf-like: a few names are in many headlines
    picks = rng.choice(len(names), size=headlines, p=weights / weights.sum())
    has_company = rng.random(headlines) < 0.75
    mentions = [[names[p]] if c else [] for p, c in zip(picks, has_company)]
    return pl.DataFrame(
        {
            "id": [f"{i:08d}" for i in range(headlines)],
            "valid": [True] * headlines,
            "mentions": mentions,
            "names": mentions,
        },
        schema_overrides={"mentions": pl.List(pl.String), "names": pl.List(pl.String)},
    )


def peak_rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--names", type=int, default=100_000)
    parser.add_argument("--headlines", type=int, default=900_000)
    parser.add_argument("--raw-rows", type=int, default=4_000, help="rows of the raw cdist pass")
    args = parser.parse_args()

    names = sorted({" ".join(n.casefold().split()) for n in company_names(args.names)})[: args.names]
    started = time.perf_counter()
    roots = cluster_names(names, PARAMS.scorer, PARAMS.threshold)
    seconds = time.perf_counter() - started
    rss_after_clustering = peak_rss_mb()

    subset = names[:: max(1, len(names) // args.raw_rows)][: args.raw_rows]
    started = time.perf_counter()
    process.cdist(subset, names, scorer=fuzz.ratio, score_cutoff=PARAMS.threshold, dtype=np.uint8, workers=-1)
    raw_rate = len(subset) * len(names) / (time.perf_counter() - started)

    labels = synthetic_labels(company_names(args.names), args.headlines)
    started = time.perf_counter()
    by_headline = headline_names(labels, frozenset(PARAMS.strip_suffixes))
    clusters = cluster_table(by_headline, PARAMS.scorer, PARAMS.threshold)
    sampled = sample(labels, clusters, by_headline, PARAMS)
    stage_seconds = time.perf_counter() - started

    print(
        json.dumps(
            {
                "names": len(names),
                "clusters": len(set(roots)),
                "seconds": round(seconds, 1),
                "peak_rss_mb": rss_after_clustering,
                "pairs_per_s": round(len(names) ** 2 / seconds),
                "raw_cdist_pairs_per_s": round(raw_rate),
                "stage_headlines": args.headlines,
                "stage_seconds": round(stage_seconds, 1),
                "stage_clusters": clusters["representative"].n_unique(),
                "stage_sample": sampled.height,
                "stage_peak_rss_mb": peak_rss_mb(),
            }
        )
    )


if __name__ == "__main__":
    main()
