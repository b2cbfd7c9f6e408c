"""Turning strings into character spans, and character spans into word-token spans.

The teacher returns strings ("Apple", "(AAPL)", "apple's"); training and evaluation need character
offsets in the headline. Matching is exact first, then case-insensitive, always on word boundaries so
"Gap" is not found inside "Gaps". A string found nowhere is a hallucination: counted, never a span.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from stages.core.schema import Span

WORD_TOKEN = re.compile(r"\w+(?:[-_]\w+)*|\S")  # the word splitter GLiNER uses, kept for both students
# What is never part of a company mention at its edges. One definition for the candidates offered to the
# teacher (stages.teacher.candidates) and for aligning its answers, so the two cannot drift.
OPENERS = "([{\"'“‘ \t"
CLOSERS = ")]}\"'”’,;:?!. \t"
POSSESSIVES = ("'s", "’s", "'S", "’S")


def trim(text: str, start: int = 0, end: int | None = None) -> tuple[int, int]:
    """The bounds of text[start:end] without leading openers, trailing closers and a possessive."""
    end = len(text) if end is None else end
    while start < end and text[start] in OPENERS:
        start += 1
    while end > start and text[end - 1] in CLOSERS:
        end -= 1
    if text[start:end].endswith(POSSESSIVES):
        end -= 2
    return start, end


def clean_mention(mention: str) -> str:
    """'(AAPL)' -> 'AAPL', "Apple's" -> 'Apple': the span we train on excludes wrappers and possessives."""
    start, end = trim(mention)
    return mention[start:end]


def _is_word(char: str) -> bool:
    return char.isalnum() or char == "_"


def _find(haystack: str, needle: str) -> list[tuple[int, int]]:
    """Occurrences of needle in haystack on word boundaries (like regex (?<!\\w)needle(?!\\w), without
    compiling a pattern per name: names are many and mostly distinct at scale)."""
    hits, start = [], haystack.find(needle)
    while start != -1:
        end = start + len(needle)
        if not (start and _is_word(haystack[start - 1]) and _is_word(needle[0])) and not (
            end < len(haystack) and _is_word(haystack[end]) and _is_word(needle[-1])
        ):
            hits.append((start, end))
        start = haystack.find(needle, start + 1)
    return hits


def _find_ignoring_case(text: str, needle: str) -> list[tuple[int, int]]:
    lowered = text.lower()
    if len(lowered) != len(text):  # a few characters change length when lowered: offsets would drift
        pattern = re.compile(r"(?<!\w)" + re.escape(needle) + r"(?!\w)", re.IGNORECASE)
        return [(m.start(), m.end()) for m in pattern.finditer(text)]
    return _find(lowered, needle.lower())


def locate(text: str, mentions: list[str], occurrences: str = "all") -> dict[str, list[tuple[int, int]]]:
    """Where each mention occurs in text, as (start, end) offsets; no offsets: a hallucination.

    occurrences: "all" keeps every place a mention occurs, "first" only its first occurrence.
    """
    if occurrences not in ("all", "first"):
        raise ValueError(f"occurrences must be 'all' or 'first', got {occurrences!r}")
    found = {}
    for mention in mentions:
        needle = clean_mention(mention)
        hits = (_find(text, needle) or _find_ignoring_case(text, needle)) if needle else []
        found[mention] = hits if occurrences == "all" else hits[:1]
    return found


def longest_first(offsets: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """The offsets without overlaps, in text order: an overlap keeps the longest ("Bank of America" over
    "America")."""
    kept: list[tuple[int, int]] = []
    for start, end in sorted(set(offsets), key=lambda s: (-(s[1] - s[0]), s[0])):
        if all(end <= s or start >= e for s, e in kept):
            kept.append((start, end))
    return sorted(kept)


def as_spans(text: str, offsets: Iterable[tuple[int, int]]) -> list[Span]:
    return [{"start": s, "end": e, "text": text[s:e]} for s, e in offsets]


def word_tokens(text: str) -> list[tuple[int, int]]:
    """(start, end) character offsets of the word tokens both students see."""
    return [(m.start(), m.end()) for m in WORD_TOKEN.finditer(text)]


def char_to_token_spans(tokens: list[tuple[int, int]], spans: list[dict]) -> list[tuple[int, int]]:
    """Inclusive token index ranges covering each character span (a span inside a token takes the token)."""
    result = []
    for span in spans:
        inside = [i for i, (s, e) in enumerate(tokens) if e > span["start"] and s < span["end"]]
        if inside:
            result.append((inside[0], inside[-1]))
    return result


def token_to_char_span(text: str, tokens: list[tuple[int, int]], first: int, last: int) -> dict:
    start, end = tokens[first][0], tokens[last][1]
    return {"start": start, "end": end, "text": text[start:end]}
