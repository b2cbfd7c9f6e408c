"""cluster_sample: fuzzy-cluster the teacher's normalised company names and sample headlines for review.

Names are clustered with rapidfuzz (scorer and threshold in params) row chunk by row chunk, so memory
stays bounded; clusters are the connected components of "similar enough" pairs. Each cluster is
represented by its most frequent form. A fraction of each cluster's headlines (at least one) is
sampled, plus fractions of headlines without a company and of invalid answers (or a sample of a given size);
headlines a team's label files (argilla_review.label_files) already label join the sample.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Set as AbstractSet

import numpy as np
import polars as pl
from rapidfuzz import process

from stages.core.cli import run_stage, stage_args
from stages.core.io import log, read_table, write_csv, write_json, write_table
from stages.core.names import SCORERS, length_ratio_floor, normalise_name
from stages.core.params import load_params
from stages.core.schema import seeded_rank
from stages.core.stage_params import ClusterSampleParams, ReviewParams
from stages.labels.files import FileLabel, read_label_files
from stages.labels.resolve import candidates, matching


def headline_names(labels: pl.DataFrame, suffixes: frozenset[str]) -> dict[str, list[str]]:
    """Normalised names per headline id, of the mentions llm_label found in the headline (a name left empty:
    its mention)."""
    names = {}
    for row in labels.filter(pl.col("valid")).iter_rows(named=True):
        forms = sorted({normalise_name(n or m, suffixes) for m, n in zip(row["mentions"], row["names"])} - {""})
        if forms:
            names[row["id"]] = forms
    return names


def cluster_names(names: list[str], scorer: str, threshold: float, chunk_rows: int = 2048) -> list[int]:
    """Cluster index per name: connected components of pairs scoring >= threshold.

    Names are sorted by length and scored in row chunks, so memory is chunk_rows x (names in reach).
    For length-bounded scorers each chunk is scored only against itself and longer names that can
    still reach the threshold, which skips most pairs without changing the result.
    """
    order = sorted(range(len(names)), key=lambda i: (len(names[i]), names[i]))
    ordered = [names[i] for i in order]
    lengths = np.array([len(n) for n in ordered])
    floor = length_ratio_floor(scorer, threshold)
    parent = list(range(len(names)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for start in range(0, len(ordered), chunk_rows):
        stop = min(start + chunk_rows, len(ordered))
        first, last = (
            (start, int(np.searchsorted(lengths, lengths[stop - 1] / floor + 1e-9, side="right")))
            if floor
            else (0, len(ordered))
        )
        scores = process.cdist(
            ordered[start:stop],
            ordered[first:last],
            scorer=SCORERS[scorer],
            score_cutoff=threshold,
            dtype=np.uint8,
            workers=-1,
        )
        for i, j in zip(*np.nonzero(scores)):
            a, b = root(start + int(i)), root(first + int(j))
            if a != b:
                parent[max(a, b)] = min(a, b)
    cluster_of_sorted = [root(i) for i in range(len(ordered))]
    result = [0] * len(names)
    for position, original in enumerate(order):
        result[original] = cluster_of_sorted[position]
    return result


def cluster_table(names_by_headline: dict[str, list[str]], scorer: str, threshold: float) -> pl.DataFrame:
    counts = Counter(n for forms in names_by_headline.values() for n in forms)
    names = sorted(counts)
    roots = cluster_names(names, scorer, threshold)
    members: dict[int, list[str]] = {}
    for name, r in zip(names, roots):
        members.setdefault(r, []).append(name)
    representative = {r: min(m, key=lambda n: (-counts[n], n)) for r, m in members.items()}
    return pl.DataFrame(
        {"name": names, "count": [counts[n] for n in names], "representative": [representative[r] for r in roots]},
        schema={"name": pl.String, "count": pl.Int64, "representative": pl.String},
    )


def sample_ids(groups: dict[str, list[str]], fraction: float, rng: np.random.Generator) -> set[str]:
    """ceil(fraction * size) ids from each group (so at least one from a non-empty group)."""
    chosen: set[str] = set()
    for key in sorted(groups):
        ids = sorted(groups[key])
        k = min(len(ids), math.ceil(fraction * len(ids)))
        chosen.update(ids[i] for i in rng.choice(len(ids), size=k, replace=False))
    return chosen


def quotas(sizes: dict[str, int], total: int, seed: int) -> dict[str, int]:
    """`total` split over the groups in proportion to their sizes, by largest remainder (ties in a seeded order,
    so among many clusters of one, which get a headline is a seeded draw)."""
    available = sum(sizes.values())
    if total >= available:
        return dict(sizes)
    exact = {group: total * size / available for group, size in sizes.items()}
    quota = {group: int(share) for group, share in exact.items()}
    by_remainder = sorted(sizes, key=lambda group: (quota[group] - exact[group], seeded_rank(seed, group)))
    for group in by_remainder[: total - sum(quota.values())]:
        quota[group] += 1
    return quota


def sample_sized(strata: dict[str, list[str]], size: int, rng: np.random.Generator, seed: int) -> set[str]:
    """`size` ids (or all there are), each stratum contributing in proportion to its size."""
    chosen: set[str] = set()
    for key, k in sorted(quotas({key: len(ids) for key, ids in strata.items()}, size, seed).items()):
        ids = sorted(strata[key])
        chosen.update(ids[i] for i in rng.choice(len(ids), size=k, replace=False))
    return chosen


def human_labelled(labels: pl.DataFrame, file_labels: list[FileLabel]) -> set[str]:
    """Ids of the headlines here that a team's label files already label."""
    return {h["id"] for _, targets in matching(file_labels, candidates(file_labels, labels)) for h in targets}


def sample(
    labels: pl.DataFrame,
    clusters: pl.DataFrame,
    names_by_headline: dict[str, list[str]],
    params: ClusterSampleParams,
    labelled: AbstractSet[str] = frozenset(),
) -> pl.DataFrame:
    """Fractions of each cluster (at least one headline each), of the headlines without a company and of the
    invalid answers; or, with `sample_size`, that many headlines in all, each cluster (a headline counts in its
    largest one), the no-company and the invalid headlines contributing in proportion to their size. Headlines
    with a human label (`labelled`) join on top: they cost no review."""
    rng = np.random.default_rng(params.seed)
    to_cluster = dict(zip(clusters["name"], clusters["representative"]))
    by_cluster: dict[str, list[str]] = {}
    for headline, forms in names_by_headline.items():
        for rep in {to_cluster[f] for f in forms}:
            by_cluster.setdefault(rep, []).append(headline)
    valid = labels.filter(pl.col("valid"))
    no_company = [i for i in valid["id"] if i not in names_by_headline]
    invalid = labels.filter(~pl.col("valid"))["id"].to_list()
    if params.sample_size is None:
        picked = {
            "cluster": sample_ids(by_cluster, params.cluster_fraction, rng),
            "no_company": sample_ids({"": no_company} if no_company else {}, params.no_company_fraction, rng),
            "invalid": sample_ids({"": invalid} if invalid else {}, params.invalid_fraction, rng),
        }
    else:
        largest = {
            h: min({to_cluster[f] for f in forms}, key=lambda rep: (-len(by_cluster[rep]), rep))
            for h, forms in names_by_headline.items()
        }
        strata: dict[str, list[str]] = {"no_company": no_company, "invalid": invalid}
        for headline, rep in largest.items():
            strata.setdefault(f"cluster:{rep}", []).append(headline)
        chosen = sample_sized({k: v for k, v in strata.items() if v}, params.sample_size, rng, params.seed)
        picked = {
            "cluster": chosen & set(largest),
            "no_company": chosen & set(no_company),
            "invalid": chosen & set(invalid),
        }
    reason = {i: why for why, ids in picked.items() for i in ids}
    reason |= {i: "human_label" for i in sorted(labelled) if i not in reason}
    clusters_of = {h: sorted({to_cluster[f] for f in forms}) for h, forms in names_by_headline.items()}
    rows = labels.filter(pl.col("id").is_in(list(reason)))
    return rows.with_columns(
        sample_reason=pl.col("id").replace_strict(reason, return_dtype=pl.String),
        clusters=pl.col("id").map_elements(lambda i: clusters_of.get(i, []), return_dtype=pl.List(pl.String)),
    )


def main(argv: list[str] | None = None) -> None:
    args = stage_args(
        __doc__.splitlines()[0], ("labels", "label-dir", "sample", "clusters", "metrics", "sizes-plot"), argv
    )
    params: ClusterSampleParams = load_params(ClusterSampleParams)
    labels = read_table(args.labels, ["id", "text", "date", "valid", "mentions", "names"])
    names_by_headline = headline_names(labels, frozenset(params.strip_suffixes))
    clusters = cluster_table(names_by_headline, params.scorer, params.threshold)
    file_labels = [
        label for found in read_label_files(load_params(ReviewParams), args.label_dir).values() for label in found
    ]
    sampled = sample(labels, clusters, names_by_headline, params, human_labelled(labels, file_labels))
    write_table(clusters, args.clusters, sort_by="name")
    write_table(sampled, args.sample)
    sizes = (
        clusters.group_by("representative")
        .agg(pl.col("count").sum())
        .sort(["count", "representative"], descending=[True, False])
    )
    reasons = sampled["sample_reason"].value_counts()
    metrics = {
        "names": clusters.height,
        "clusters": sizes.height,
        "headlines_in": labels.height,
        "sample_size": sampled.height,
        "sampled_by": {r["sample_reason"]: r["count"] for r in reasons.iter_rows(named=True)},
        "largest_clusters": {r["representative"]: r["count"] for r in sizes.head(10).iter_rows(named=True)},
    }
    write_json(args.metrics, metrics)
    plot = sizes.with_row_index("rank", offset=1).rename({"count": "mentions"})
    write_csv(args.sizes_plot, plot.to_dicts(), plot.columns)
    log.info(
        "cluster_sample: %d names -> %d clusters; sampled %d of %d headlines %s",
        metrics["names"],
        metrics["clusters"],
        sampled.height,
        labels.height,
        metrics["sampled_by"],
    )


if __name__ == "__main__":
    run_stage(main)
