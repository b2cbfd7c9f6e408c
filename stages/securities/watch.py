"""The new-name watch: per month of the feed, the mentions no security was linked to and the names first seen
after the training data's end date, with the top names. The headlines that carry them are what the students
have not learnt, so they head the next review (a queue, most frequent new names first)."""

from __future__ import annotations

import datetime as dt
import heapq
from collections import Counter, defaultdict
from dataclasses import dataclass, field


@dataclass
class Month:
    headlines: int = 0
    mentions: int = 0
    unlinked: int = 0
    new_name_mentions: int = 0
    new_names: Counter[str] = field(default_factory=Counter)


@dataclass(frozen=True)
class Flagged:
    id: str
    date: dt.date
    text: str
    new_names: tuple[str, ...]
    unlinked: int


class NameHistory:
    """The first pass over the feed: the names seen on or before the cutoff (in the feed or the training labels),
    and how many headlines after it name each other one."""

    def __init__(self, cutoff: dt.date, known: set[str] | None = None):
        self.cutoff, self.known = cutoff, set(known or ())
        self.later: Counter[str] = Counter()

    def add(self, day: dt.date, names: list[str]) -> None:
        if day <= self.cutoff:
            self.known.update(n for n in names if n)
        else:
            self.later.update(set(n for n in names if n))

    def new_names(self) -> Counter[str]:
        return Counter({name: count for name, count in self.later.items() if name not in self.known})


class Watch:
    """The second pass, fed one headline at a time (its date, the name of each mention and whether it was
    linked). It keeps the `queue_size` flagged headlines of highest review priority: those with the most-seen
    new names first, then the most unlinked mentions, then the earliest; memory holds the queue, not the feed."""

    def __init__(self, history: NameHistory, queue_size: int):
        self.cutoff, self.new_counts = history.cutoff, history.new_names()
        self.months: defaultdict[str, Month] = defaultdict(Month)
        self.queue_size, self.flagged = queue_size, 0
        self._heap: list[tuple[tuple, Flagged]] = []

    def add(self, id_: str, day: dt.date, text: str, names: list[str], linked: list[bool]) -> None:
        month = self.months[day.strftime("%Y-%m")]
        month.headlines += 1
        month.mentions += len(names)
        month.unlinked += linked.count(False)
        new = tuple(dict.fromkeys(n for n in names if n in self.new_counts)) if day > self.cutoff else ()
        month.new_name_mentions += sum(1 for n in names if n in new)
        month.new_names.update(new)
        if not new and all(linked):
            return
        self.flagged += 1
        item = Flagged(id_, day, text, new, linked.count(False))
        # heapq keeps the smallest first: the key is the priority, negated, so the least urgent is popped
        key = (sum(self.new_counts[n] for n in new), item.unlinked, -day.toordinal(), _reverse(id_))
        if len(self._heap) < self.queue_size:
            heapq.heappush(self._heap, (key, item))
        elif key > self._heap[0][0]:
            heapq.heapreplace(self._heap, (key, item))

    def queue(self) -> list[Flagged]:
        return [item for _, item in sorted(self._heap, key=lambda entry: entry[0], reverse=True)]

    def summary(self, top: int) -> dict:
        def ranked(counts: Counter[str]) -> list[list]:
            return [[n, c] for n, c in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:top]]

        months = {
            key: {
                "headlines": m.headlines,
                "mentions": m.mentions,
                "unlinked_mentions": m.unlinked,
                "new_name_mentions": m.new_name_mentions,
                "top_new_names": ranked(m.new_names),
            }
            for key, m in sorted(self.months.items())
        }
        totals = {
            "cutoff": self.cutoff.isoformat(),
            "headlines": sum(m.headlines for m in self.months.values()),
            "mentions": sum(m.mentions for m in self.months.values()),
            "unlinked_mentions": sum(m.unlinked for m in self.months.values()),
            "new_name_mentions": sum(m.new_name_mentions for m in self.months.values()),
            "new_names": len(self.new_counts),
            "flagged_headlines": self.flagged,
            "top_new_names": ranked(self.new_counts),
        }
        return {"totals": totals, "months": months}


def _reverse(id_: str) -> tuple[int, ...]:
    """An id's order turned around, so a tie in the heap keeps the smaller id (as the queue lists it); the end
    mark outranks every character, so an id that is a prefix of another ("a", "ab") stays the smaller."""
    return (*(-ord(c) for c in id_), 1)
