import numpy as np
import polars as pl

from stages.cluster_sample import cluster_names, cluster_table, headline_names, normalise_name, sample, sample_ids
from stages.common.stage_params import ClusterSampleParams

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


def test_names_are_those_of_the_mentions_llm_label_found_or_the_mention_itself():
    labels = pl.DataFrame({"id": ["a", "b", "c"], "valid": [True, True, False],
                           "mentions": [["Apple", "AAPL"], ["MSFT"], ["Tesla"]],
                           "names": [["Apple Inc.", ""], [""], ["Tesla"]]})
    assert headline_names(labels, SUFFIXES) == {"a": ["aapl", "apple"], "b": ["msft"]}


def test_sample_includes_no_company_and_records_reasons():
    labels = pl.DataFrame({
        "id": ["a", "b", "c", "d"], "valid": [True, True, True, False],
        "mentions": [["Apple"], ["apple"], [], []], "names": [["Apple"], ["Apple"], [], []]})
    names = headline_names(labels, SUFFIXES)
    clusters = cluster_table(names, "ratio", 85)
    params = ClusterSampleParams(scorer="ratio", threshold=85, strip_suffixes=sorted(SUFFIXES), cluster_fraction=0.5,
                                 no_company_fraction=1.0, invalid_fraction=1.0, seed=0)
    sampled = sample(labels, clusters, names, params)
    reasons = dict(zip(sampled["id"], sampled["sample_reason"]))
    assert reasons["c"] == "no_company" and reasons["d"] == "invalid"
    assert sum(r == "cluster" for r in reasons.values()) == 1

