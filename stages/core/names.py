"""Company names: their normalised form, the fuzzy scorers, and the canonical name of a mention.

cluster_sample clusters the teacher's normalised names (rapidfuzz scorer and threshold in its params); tag gives
each mention the canonical name (representative) of the cluster it would have joined, by the same normalisation,
scorer and threshold, so both stages agree on what "the same company" means.
"""

from __future__ import annotations

import re
from functools import lru_cache

import numpy as np
from rapidfuzz import fuzz, process

SCORERS = {"ratio": fuzz.ratio, "token_sort_ratio": fuzz.token_sort_ratio, "WRatio": fuzz.WRatio}
_NON_WORD = re.compile(r"[^\w&]+")


def normalise_name(name: str, suffixes: frozenset[str]) -> str:
    words = _NON_WORD.sub(" ", name.casefold()).split()
    while len(words) > 1 and words[-1] in suffixes:
        words.pop()
    return " ".join(words)


def length_ratio_floor(scorer: str, threshold: float) -> float | None:
    """Smallest shorter/longer length ratio that can still reach the threshold, for length-bounded scorers.

    fuzz.ratio is 100 * (1 - indel / (a + b)) and indel >= b - a, so it is at most 200a / (a + b):
    reaching t needs a / b >= t / (200 - t) (0.739 at 85). token_sort_ratio only reorders tokens.
    """
    return threshold / (200 - threshold) if scorer in ("ratio", "token_sort_ratio") and threshold > 0 else None


class CanonicalNames:
    """The canonical name of a mention: the representative of the cluster its normalised form is a member of, or
    else of the member it scores best against at or above the threshold (single linkage, as the clusters were
    built), or None. Exact forms are a dict lookup; only the rest are scored, against the members whose length
    can still reach the threshold, and each such form once (an LRU cache: a feed repeats its names)."""

    def __init__(
        self,
        names: list[str],
        representatives: list[str],
        scorer: str,
        threshold: float,
        suffixes: frozenset[str],
        cache_size: int = 1 << 16,
    ):
        self.exact = dict(zip(names, representatives))
        members = sorted(self.exact, key=lambda n: (len(n), n))
        self._members = members
        self._representatives = [self.exact[n] for n in members]
        self._lengths = np.array([len(n) for n in members])
        self._scorer, self._threshold, self._suffixes = SCORERS[scorer], threshold, suffixes
        self._floor = length_ratio_floor(scorer, threshold)
        self._nearest = lru_cache(maxsize=cache_size)(self._score)

    def __call__(self, mention: str) -> str | None:
        form = normalise_name(mention, self._suffixes)
        if not form:
            return None
        found = self.exact.get(form)
        return found if found is not None else self._nearest(form)

    def _score(self, form: str) -> str | None:
        first, last = 0, len(self._members)
        if self._floor:
            first = int(np.searchsorted(self._lengths, len(form) * self._floor - 1e-9, side="left"))
            last = int(np.searchsorted(self._lengths, len(form) / self._floor + 1e-9, side="right"))
        best = process.extractOne(form, self._members[first:last], scorer=self._scorer, score_cutoff=self._threshold)
        return None if best is None else self._representatives[first + best[2]]
