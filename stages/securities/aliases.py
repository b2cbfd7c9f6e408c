"""Aliases learnt from the feed: where each headline carries its own symbol (FNSPID's Stock_symbol), how often a
mention's name meets each symbol, over which dates. A name that meets one symbol in most of its headlines is
proposed as that symbol's alias ("google" -> GOOGL), with its counts and precision; it joins the master only once a
reviewer copies it into the accepted-aliases file (params link.accepted_aliases). Nothing is accepted silently.

Two flags help the reviewer: `names_security` (the alias's first word starts as the first word of one of the
symbol's master names: "agilent tech" of Agilent Technologies; a competitor, broker or product the feed's tag
also meets does not) and `new_security` (the master has no row of the symbol: accepting the alias adds one).
A feed's tags are noisy, and competitors share headlines, so precision alone proposes wrong names too."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from stages.securities.master import Master, Security
from stages.securities.settings import AliasProposals

STEM = 4  # letters of a first word compared by names_security: "advanced auto" meets "Advance Auto Parts"


@dataclass(frozen=True)
class Proposal:
    alias: str
    symbol: str
    count: int  # headlines where the name and the symbol meet
    name_count: int  # headlines with the name and a feed symbol
    precision: float
    first_date: dt.date
    last_date: dt.date
    links_now_to: str  # what the master links the name to today (blank: nothing), so a reviewer sees the change
    names_security: bool  # its first word starts as a master name of the symbol does
    new_security: bool  # the master has no row of the symbol


class Cooccurrence:
    """Counts of (name form, feed symbol) per headline, kept as the feed streams past."""

    def __init__(self) -> None:
        self.pairs: Counter[tuple[str, str]] = Counter()
        self.names: Counter[str] = Counter()
        self.dates: dict[tuple[str, str], tuple[dt.date, dt.date]] = {}

    def add(self, forms: set[str], symbol: str, day: dt.date) -> None:
        for form in forms:
            self.names[form] += 1
            self.pairs[(form, symbol)] += 1
            first, last = self.dates.get((form, symbol), (day, day))
            self.dates[(form, symbol)] = (min(first, day), max(last, day))


def names_security(alias: str, rows: list[Security]) -> bool:
    """The alias's first word starts as the first word of one of the rows' names or aliases does."""
    words = alias.split()
    return bool(words) and any(
        form.split()[0][:STEM] == words[0][:STEM] for row in rows for form in row.forms() if form.split()
    )


def propose(
    counts: Cooccurrence, rules: AliasProposals, master: Master, links_now: Callable[[str, dt.date], str | None]
) -> list[Proposal]:
    """Names that meet one symbol often and mostly, which the linker (links_now: name, day -> symbol) does not
    already link to it on the last day they met; most frequent first."""
    found = []
    for (form, symbol), count in counts.pairs.items():
        precision = count / counts.names[form]
        if count < rules.min_count or precision < rules.min_precision:
            continue
        first, last = counts.dates[(form, symbol)]
        now = links_now(form, last)
        if now != symbol:
            rows = master.by_symbol.get(symbol, [])
            found.append(
                Proposal(
                    form,
                    symbol,
                    count,
                    counts.names[form],
                    round(precision, 4),
                    first,
                    last,
                    now or "",
                    names_security(form, rows),
                    not rows,
                )
            )
    return sorted(found, key=lambda p: (-p.count, p.alias, p.symbol))
