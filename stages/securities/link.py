"""Link a company mention to the symbol valid on its headline's date, with a score and the evidence used.

Each piece of evidence proposes securities with a weight (params link.linker.weights):
  ticker      the mention is followed by "(SYM)" in the headline, or has a symbol's shape written in capitals
              (in a headline all in one case, in that case) and is no word of link.linker.not_tickers ("OI",
              "EPS": what finance headlines write in capitals and mean no security by);
  alias       the mention's name form is a master name or alias;
  name        the teacher's normalised name, or the mention's cluster name, is a master name or alias;
  prefix      the mention's name form is the first words of a master name ("Micron" of "Micron Technology");
  fuzzy       the best master forms by the rapidfuzz scorer of link.linker.fuzzy at or above its threshold,
              weighted by score / 100.
A security listed on a known exchange that is none of link.linker.markets.exchanges has its weight cut by
other_discount (in US news "Merck" is Merck & Co., not Merck KGaA). A security keeps its best-weighted evidence.
The best wins when it reaches link.linker.min_score and no other security comes within ambiguity_margin of it
(or when it is the "(SYM)" written after the mention, whatever else comes close); otherwise the mention stays
unlinked (symbol None) and the top candidates are listed, so "Apple" next to "Apple Hospitality REIT" is a choice
a reviewer sees, not a guess. Names and tickers are looked up as of the headline's date (Master.as_of): a rename
links a headline before it to the old symbol and after it to the new one; a reused ticker to whichever company
held it then.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
from rapidfuzz import process

from stages.core.names import SCORERS, length_ratio_floor
from stages.securities.master import Master, Security, name_form
from stages.securities.settings import LinkerParams

_SYMBOL = re.compile(r"[A-Z][A-Z0-9]{0,5}(?:[.\-][A-Z])?")
_AFTER = re.compile(r"\s*\(\s*([A-Za-z][A-Za-z0-9]{0,5}(?:[.\-][A-Za-z])?)\s*\)")


@dataclass(frozen=True)
class Candidate:
    symbol: str
    name: str
    score: float
    evidence: str


@dataclass(frozen=True)
class Link:
    symbol: str | None
    score: float
    evidence: str | None
    candidates: tuple[Candidate, ...] = field(default=())  # best first; for an unlinked mention, what it could be


def written_ticker(mention: str, start: int, end: int, headline: str) -> str | None:
    """The symbol a headline writes for this mention: "(SYM)" right after it, or the mention itself when it has
    a symbol's shape, written in capitals (in a headline all in one case, in that case)."""
    after = _AFTER.match(headline, end)
    if after:
        return after.group(1).upper()
    bare = mention.strip()
    one_case = headline.isupper() or headline.islower()
    written = bare.upper() if one_case else bare
    return written if _SYMBOL.fullmatch(written) else None


class Linker:
    def __init__(self, master: Master, params: LinkerParams):
        self.master, self.params = master, params
        self._forms = sorted(master.by_form, key=lambda f: (len(f), f))
        self._lengths = np.array([len(f) for f in self._forms])
        self._scorer = SCORERS[params.fuzzy.scorer]
        self._floor = length_ratio_floor(params.fuzzy.scorer, params.fuzzy.threshold)
        self._fuzzy = lru_cache(maxsize=1 << 16)(self._fuzzy_forms)

    def _fuzzy_forms(self, form: str) -> tuple[tuple[str, float], ...]:
        first, last = 0, len(self._forms)
        if self._floor:
            first = int(np.searchsorted(self._lengths, len(form) * self._floor - 1e-9, side="left"))
            last = int(np.searchsorted(self._lengths, len(form) / self._floor + 1e-9, side="right"))
        found = process.extract(
            form,
            self._forms[first:last],
            scorer=self._scorer,
            score_cutoff=self.params.fuzzy.threshold,
            limit=self.params.top_candidates + 1,
        )
        return tuple((match, score) for match, score, _ in found)

    def candidates(
        self, mention: str, start: int, end: int, headline: str, day: dt.date | None, hints: tuple[str, ...] = ()
    ) -> list[Candidate]:
        """Every security the evidence proposes, each at its best weight, best first."""
        weights = self.params.weights
        best: dict[str, tuple[float, str, Security]] = {}

        markets = self.params.markets

        def propose(rows: list[Security], weight: float, evidence: str) -> None:
            for security in self.master.as_of(rows, day):
                elsewhere = security.exchange is not None and security.exchange not in markets.exchanges
                score = weight * (1 - markets.other_discount) if elsewhere else weight
                if security.security_id not in best or score > best[security.security_id][0]:
                    best[security.security_id] = (score, evidence, security)

        ticker = written_ticker(mention, start, end, headline)
        if ticker and (ticker not in self.params.not_tickers or _AFTER.match(headline, end)):
            propose(self.master.by_symbol.get(ticker, []), weights.ticker, "ticker")
        form = name_form(mention)
        propose(self.master.by_form.get(form, []), weights.alias, "alias")
        for hint in hints:
            propose(self.master.by_form.get(name_form(hint), []), weights.name, "name")
        propose(self.master.by_prefix.get(form, []), weights.prefix, "prefix")
        if form and form not in self.master.by_form and form not in self.master.by_prefix:
            for match, score in self._fuzzy(form):
                propose(self.master.by_form[match], weights.fuzzy * score / 100, f"fuzzy:{self.params.fuzzy.scorer}")
        ranked = sorted(best.values(), key=lambda b: (-b[0], b[2].symbol))
        return [Candidate(s.symbol, s.name, round(w, 4), e) for w, e, s in ranked]

    def link(
        self, mention: str, start: int, end: int, headline: str, day: dt.date | None, hints: tuple[str, ...] = ()
    ) -> Link:
        found = self.candidates(mention, start, end, headline, day, hints)
        top = tuple(found[: self.params.top_candidates])
        if not found or found[0].score < self.params.min_score:
            return Link(None, found[0].score if found else 0.0, None, top)
        # "(SYM)" written right after the mention settles it: the headline itself says which security it means
        written = found[0].evidence == "ticker" and _AFTER.match(headline, end) is not None
        if not written and len(found) > 1 and found[1].score > found[0].score - self.params.ambiguity_margin:
            return Link(None, found[0].score, "ambiguous", top)
        return Link(found[0].symbol, found[0].score, found[0].evidence, top)


def headline_symbols(links: list[Link]) -> list[str]:
    """The symbols a headline is about, in the order its mentions first name them."""
    return list(dict.fromkeys(link.symbol for link in links if link.symbol))
