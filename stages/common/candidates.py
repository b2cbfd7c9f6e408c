"""A headline's candidate mentions: what the teacher may name in it (its per-headline answer schema)."""
from __future__ import annotations

import re

from stages.common.spans import trim

# Words that are never part of a company mention, except JOINERS inside one ("Bank of America"): the
# others end a phrase ("Apple And Tesla", "Rises As Oil Slides").
FUNCTION_WORDS = frozenset("""a about above after against ahead all amid an and are as at be before behind below
    but by can could de did do does down during for from has have how if in into is it its la may might more most
    new no not of off on onto or out over per says should so than that the their this to under up via vs versus
    was what when where which while who why will with without would &""".split())
JOINERS = frozenset(["of", "the", "de", "la", "&"])
# Words of financial headlines that are no part of a company name ("Adobe Acquires Nokia" offers "Adobe" and
# "Nokia"): offered as mentions, a small model picks them. Index names are here too: in a headline "Dow" or
# "Nasdaq" is the index, which is not a company.
GENERIC_WORDS = frozenset("""acquires after-hours analyst analysts announces beat beats bet better buy buyback buys
    ceo cfo claims climbs cuts deal deals declares dividend downgrades drags drops earnings eps estimates expect
    falls futures gains guidance healthcare higher hits housing interest ipo jobless jumps launches leads lower
    market markets mid-day misses mixed movers moving news option options partnership plunges points pre-market
    premarket preview price prices profit quarter quarterly raises rally report reports revenue rises sales
    scheduled sees sell session share shares short sinks slides slips soars starts stock stocks strong sues
    supply surges targets today top traders trading tweet upgrades update week year
    dow nasdaq ftse dax nikkei cac s&p russell
    monday tuesday wednesday thursday friday saturday sunday january february march april june july august
    september october november december q1 q2 q3 q4""".split())


def _words(text: str) -> list[tuple[int, int, bool]]:
    """(start, end, phrase_ends_here) of each word, trimmed like a mention (spans.trim).

    A phrase ends at punctuation (',', ':', ')', ...), a possessive, a function or generic word other than a
    joiner, or a word with no letter (a number, a dash, a price): no mention runs across one.
    """
    words: list[tuple[int, int, bool]] = []

    def end_phrase() -> None:
        if words:
            words[-1] = (*words[-1][:2], True)

    for match in re.finditer(r"\S+", text):
        start, end = trim(text, *match.span())
        if start > match.start():
            end_phrase()
        word = text[start:end].lower()
        if word not in JOINERS and (word in FUNCTION_WORDS or word in GENERIC_WORDS or word.startswith("$")
                                    or word.endswith("%") or not any(c.isalpha() for c in word)):
            end_phrase()
            continue
        words.append((start, end, end < match.end()))
    return words


def candidate_mentions(text: str, max_words: int) -> list[str]:
    """What the teacher may name in this headline: its word n-grams up to max_words, cleaned of wrappers
    ('(AAPL)' -> 'AAPL') and possessives, not crossing punctuation, function or generic words, not starting or
    ending with a joiner. Each is a slice of the headline, so it always aligns to a span."""
    words = _words(text)
    skip = [text[s:e].lower() in JOINERS for s, e, _ in words]
    found: dict[str, None] = {}
    for i, (start, _, _) in enumerate(words):
        for j in range(i, min(i + max_words, len(words))):
            if not skip[i] and not skip[j]:
                found[text[start:words[j][1]]] = None
            if words[j][2]:
                break
    return list(found)
