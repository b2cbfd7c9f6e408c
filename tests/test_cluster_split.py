import datetime as dt

import numpy as np
import polars as pl
import pytest

from stages.cluster_sample import cluster_names, cluster_table, normalise_name, sample, sample_ids
from stages.split import split_by_date

SUFFIXES = frozenset({"inc", "corp"})


def test_normalise_name_drops_case_punctuation_and_legal_suffixes():
    assert normalise_name("Apple, Inc.", SUFFIXES) == "apple"
    assert normalise_name("AT&T Corp", SUFFIXES) == "at&t"
    assert normalise_name("Inc", SUFFIXES) == "inc"


def test_similar_names_share_a_cluster_in_any_chunking():
    names = ["microsoft", "microsft", "tesla", "tesla motors", "nvidia"]
    for chunk in (1, 2, 100):
        roots = cluster_names(names, "ratio", 85, chunk_rows=chunk)
        assert roots[0] == roots[1] and roots[0] != roots[2] and len(set(roots)) == 4


def components(names, pairs):
    parent = list(range(len(names)))

    def root(i):
        while parent[i] != i:
            i = parent[i]
        return i
    for a, b in pairs:
        parent[max(root(a), root(b))] = min(root(a), root(b))
    groups = {}
    for i in range(len(names)):
        groups.setdefault(root(i), set()).add(names[i])
    return sorted(sorted(g) for g in groups.values())


def test_length_pruning_finds_exactly_the_pairs_a_full_matrix_finds():
    from rapidfuzz import fuzz, process
    rng = np.random.default_rng(1)
    alphabet = list("abcdefghij ")
    bases = ["".join(rng.choice(alphabet, size=rng.integers(3, 25))).strip() or "x" for _ in range(60)]
    names = sorted({b[: max(1, len(b) - int(rng.integers(0, 3)))] + "".join(rng.choice(alphabet, int(rng.integers(0, 3))))
                    for b in bases for _ in range(4)})
    full = process.cdist(names, names, scorer=fuzz.ratio, score_cutoff=85)
    expected = components(names, zip(*np.nonzero(full)))
    for chunk in (1, 7, 1000):
        roots = cluster_names(names, "ratio", 85, chunk_rows=chunk)
        assert components(names, [(i, roots.index(r)) for i, r in enumerate(roots)]) == expected


def test_representative_is_the_most_frequent_form():
    table = cluster_table({"h1": ["microsoft"], "h2": ["microsoft"], "h3": ["microsft"], "h4": ["tesla"]},
                          "ratio", 85)
    assert dict(zip(table["name"], table["representative"])) == {
        "microsft": "microsoft", "microsoft": "microsoft", "tesla": "tesla"}


def test_sampling_takes_at_least_one_per_cluster_and_is_seeded():
    groups = {"a": ["1", "2", "3", "4"], "b": ["5"]}
    picked = sample_ids(groups, 0.25, np.random.default_rng(0))
    assert len(picked) == 2 and "5" in picked
    assert picked == sample_ids(groups, 0.25, np.random.default_rng(0))


def test_sample_includes_no_company_and_records_reasons():
    labels = pl.DataFrame({
        "id": ["a", "b", "c", "d"], "valid": [True, True, True, False],
        "result": [["Apple"], ["apple"], [], []], "normalized_result": [["Apple"], ["Apple"], [], []],
        "hallucinated": [[], [], [], []], "length_mismatch": [False] * 4})
    from stages.cluster_sample import headline_names
    names = headline_names(labels, SUFFIXES)
    clusters = cluster_table(names, "ratio", 85)
    params = {"seed": 0, "cluster_fraction": 0.5, "no_company_fraction": 1.0, "invalid_fraction": 1.0}
    sampled = sample(labels, clusters, names, params)
    reasons = dict(zip(sampled["id"], sampled["sample_reason"]))
    assert reasons["c"] == "no_company" and reasons["d"] == "invalid"
    assert sum(r == "cluster" for r in reasons.values()) == 1


RANGES = {"train": {"start": "2010-01-01", "end": "2016-12-31"},
          "valid": {"start": "2017-01-01", "end": "2018-12-31"},
          "test": {"start": "2019-01-01", "end": "2020-12-31"}}


def test_split_by_date_counts_rows_outside_every_range():
    frame = pl.DataFrame({"id": list("abcd"), "date": [dt.date(2012, 5, 1), dt.date(2018, 12, 31),
                                                          dt.date(2019, 1, 1), dt.date(2021, 6, 1)]})
    parts, outside = split_by_date(frame, RANGES)
    assert {k: v["id"].to_list() for k, v in parts.items()} == {"train": ["a"], "valid": ["b"], "test": ["c"]}
    assert outside == 1


def test_empty_split_is_a_clear_error():
    frame = pl.DataFrame({"id": ["a"], "date": [dt.date(2012, 5, 1)]})
    with pytest.raises(SystemExit, match=r"split 'valid' \(2017-01-01..2018-12-31\) is empty"):
        split_by_date(frame, RANGES)
