"""How far reviewers agree, on the headlines two or more of them submitted.

Span-level, between every pair of reviewers of a headline (entity F1 is symmetric, so either may be "gold"): exact
F1 (same start and end) and overlap F1 (any overlap counts); the share of pairs that marked exactly the same spans
(which, unlike F1, counts two empty answers as agreement); and each reviewer against the adjudicated label
(resolve_responses' choice), which says who drifts from the team. A discard against a submission is counted apart:
there are no spans to compare.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import combinations

from stages.core.metrics import entity_scores, partial_f1
from stages.core.schema import span_tuples


def agreement(reviewed: Sequence[tuple[list[dict], list[dict]]]) -> dict:
    """Per headline (its final responses {user_id, status, value}, its adjudicated spans): the agreement figures of
    the headlines with at least two final responses."""
    gold, other = [], []  # the two sides of every submitted pair
    by_user: dict[str, tuple[list, list]] = {}  # user -> (adjudicated, theirs) per headline they submitted
    several = split_status = identical = 0
    for responses, adjudicated in reviewed:
        final = sorted((r for r in responses if r["status"] in ("submitted", "discarded")), key=lambda r: r["user_id"])
        if len(final) < 2:
            continue
        several += 1
        submitted = [r for r in final if r["status"] == "submitted"]
        split_status += len(submitted) not in (0, len(final))
        for a, b in combinations(submitted, 2):
            gold.append(a["value"] or [])
            other.append(b["value"] or [])
            identical += span_tuples(a["value"]) == span_tuples(b["value"])
        for r in submitted:
            theirs = by_user.setdefault(r["user_id"], ([], []))
            theirs[0].append(adjudicated)
            theirs[1].append(r["value"] or [])
    return {
        "records_with_several_reviewers": several,
        "discarded_by_some_only": split_status,
        "pairs": len(gold),
        "pairs_identical": round(identical / len(gold), 4) if gold else None,
        "exact_f1": entity_scores(gold, other)["f1"] if gold else None,
        "overlap_f1": partial_f1(gold, other) if gold else None,
        "reviewer_vs_adjudicated": {
            user: {
                "records": len(theirs),
                "exact_f1": entity_scores(adjudicated, theirs)["f1"],
                "overlap_f1": partial_f1(adjudicated, theirs),
            }
            for user, (adjudicated, theirs) in sorted(by_user.items())
        },
    }
