"""A headline's candidate mentions: what the teacher may name in it (its per-headline answer schema)."""

from __future__ import annotations

import re

from stages.core.spans import trim

# Words that are never part of a company mention, except JOINERS inside one ("Bank of America"): the
# others end a phrase ("Apple And Tesla", "Rises As Oil Slides").
FUNCTION_WORDS = frozenset(
    """a about above after against ahead all amid an and are as at be before behind below
    but by can could de did do does down during for from has have how if in into is it its la may might more most
    new no not of off on onto or out over per says should so than that the their this to under up via vs versus
    was what when where which while who why will with without would &""".split()
)
JOINERS = frozenset(["of", "the", "de", "la", "&"])
# Words of financial headlines that are no part of a company name ("Adobe Acquires Nokia" offers "Adobe" and
# "Nokia"): offered as mentions, a small model picks them. Index names are here too: in a headline "Dow" or
# "Nasdaq" is the index, which is not a company.
GENERIC_WORDS = frozenset(
    """acquires after-hours analyst analysts announces beat beats bet better buy buyback buys
    ceo cfo claims climbs cuts deal deals declares dividend downgrades drags drops earnings eps estimates expect
    falls futures gains guidance healthcare higher hits housing interest ipo jobless jumps launches leads lower
    market markets mid-day misses mixed movers moving news option options partnership plunges points pre-market
    premarket preview price prices profit promoter promoters quarter quarterly raises rally report reports revenue
    rises sales scheduled sees sell session set share shares short sinks slides slips soars starts stock stocks
    strategist strong sues
    supply surges targets today top traders trading tweet upgrades update week year
    dow nasdaq ftse dax nikkei cac s&p russell
    monday tuesday wednesday thursday friday saturday sunday january february march april june july august
    september october november december q1 q2 q3 q4""".split()
)
# Words that make a company name but name none alone ("Bank" of "Kotak Mahindra Bank"): offered only inside a
# longer mention, never as one.
DESIGNATORS = frozenset(
    """bank banks capital co company corp corporation finance financial fund group holdings inc
    industries insurance limited ltd motors pharma plc power securities services steel systems technologies tech
    ventures""".split()
)
# A sentence-case headline with ": Firstname Lastname" at its end or before a comma (", Angel Broking") quotes a
# person (a brokerage there has an organisation word or an acronym: "Angel Broking", "CLSA", "JP Morgan"): no
# mention is offered from the name. Initials count as first names ("P Phani Sekhar").
_QUOTED_PERSON = re.compile(r":\s+((?:[A-Z][a-z]*\.?\s+){1,2}[A-Z][a-z]+)\s*(?:,|$)")
# Places are no companies (review guidelines) but start many names ("Air India", "China Mobile", "Hong Kong
# Exchanges"): a mention made of place words only is not offered; one with another word is.
PLACES = frozenset(
    """africa african america american amsterdam andhra asia asian australia australian bangladesh
    beijing bengal bihar brazil brazilian britain british canada canadian china chinese delhi dubai dutch england
    europe european france french german germany global greece greek gujarat hong india indian indonesia iran iraq
    israel italian italy japan japanese karnataka kerala kong korea korean london malaysia maharashtra mexico mumbai
    nadu odisha pakistan philippines pradesh punjab rajasthan russia russian saudi shanghai singapore spain spanish
    swiss switzerland taiwan tamil telangana thailand tokyo turkey turkish uk us usa vietnam world""".split()
)
ORGANISATION_WORDS = DESIGNATORS | frozenset(
    """advisors advisory asset associates bnp broking brokers capital
    consultants equities investment investments management markets research securities stock suisse wealth""".split()
)


def _words(text: str) -> list[tuple[int, int, bool]]:
    """(start, end, phrase_ends_here) of each word, trimmed like a mention (spans.trim).

    A phrase ends at punctuation (',', ':', ')', ...), a possessive, a function or generic word other than a
    joiner, or a word with no letter (a number, a dash, a price): no mention runs across one.
    """
    words: list[tuple[int, int, bool]] = []

    def end_phrase() -> None:
        if words:
            words[-1] = (*words[-1][:2], True)

    matches = [(m, trim(text, *m.span())) for m in re.finditer(r"\S+", text)]
    for i, (match, (start, end)) in enumerate(matches):
        if start > match.start():
            end_phrase()
        word = text[start:end].lower()
        before_designator = (
            word in GENERIC_WORDS
            and end == match.end()
            and i + 1 < len(matches)
            and text[slice(*matches[i + 1][1])].lower() in DESIGNATORS
        )  # "News Corp": a generic word in a name
        if (
            word not in JOINERS
            and not before_designator
            and (
                word in FUNCTION_WORDS
                or word in GENERIC_WORDS
                or word.startswith("$")
                or word.endswith("%")
                or not any(c.isalpha() for c in word)
            )
        ):
            end_phrase()
            continue
        words.append((start, end, end < match.end()))
    return words


def _without_lowercase(text: str, words: list[tuple[int, int, bool]]) -> list[tuple[int, int, bool]]:
    kept: list[tuple[int, int, bool]] = []
    for start, end, ends in words:
        if _cased(text[start:end]) or text[start:end].lower() in JOINERS:
            kept.append((start, end, ends))
        elif kept:
            kept[-1] = (*kept[-1][:2], True)
    return kept


def _quoted_person(text: str) -> tuple[int, int]:
    """(start, end) of the name of a person quoted after a colon ((0, 0) when the headline quotes none)."""
    match = _QUOTED_PERSON.search(text)
    if match and not any(w.lower().rstrip(".") in ORGANISATION_WORDS for w in match.group(1).split()):
        return match.span(1)
    return 0, 0


def _cased(word: str) -> bool:
    return any(c.isupper() or c.isdigit() for c in word)


def _sentence_case(text: str, words: list[tuple[int, int, bool]]) -> bool:
    """A headline written in sentence case ("Titan hits record high on strong demand"): some of its words
    (other than function and generic words) have a capital and two or more have none, so a word without one is
    no name there. All-lowercase and Title Case headlines say nothing by case."""
    lowercase = [not _cased(text[s:e]) for s, e, _ in words if text[s:e].lower() not in JOINERS]
    return sum(lowercase) >= 2 and not all(lowercase)


def candidate_mentions(text: str, max_words: int) -> list[str]:
    """What the teacher may name in this headline: its word n-grams up to max_words, cleaned of wrappers
    ('(AAPL)' -> 'AAPL') and possessives, not crossing punctuation, function or generic words, not starting or
    ending with a joiner, not a lone designator ('Bank'), not only places ('Hong Kong'), not in the name of a person
    quoted after a colon. Each is a slice of the headline, so it always aligns to a span."""
    words = _words(text)
    if _sentence_case(text, words):  # case says something: a lowercase word ends a phrase, a name after a
        person_start, person_end = _quoted_person(text)  # colon is a person quoted
        words = _without_lowercase(text, [w for w in words if not person_start <= w[0] < person_end])
    skip = [text[s:e].lower() in JOINERS for s, e, _ in words]
    found: dict[str, None] = {}
    for i, (start, _, _) in enumerate(words):
        for j in range(i, min(i + max_words, len(words))):
            mention = text[start : words[j][1]]
            places_only = all(text[s:e].lower() in PLACES for s, e, _ in words[i : j + 1])
            if (
                not skip[i]
                and not skip[j]
                and not places_only
                and not (i == j and mention.lower() in DESIGNATORS | GENERIC_WORDS)
            ):
                found[mention] = None
            if words[j][2]:
                break
    return list(found)
