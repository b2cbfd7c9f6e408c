"""File labels (label_files.py) tied to headlines: every span checked against the headline's text (offsets,
span text, overlaps, CoNLL tokens that do not cover the whole headline, contradicting labels), each problem
one message naming the file and line. A label of a headline that is not here is no problem: it is counted."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

import polars as pl

from stages.labels.files import FileLabel, LabelFileError, accepted

_WHITESPACE = re.compile(r"\s+")


def _char_spans_of_tokens(label: FileLabel, text: str) -> list[dict]:
    """Place each token in the text in order (whitespace between tokens may differ from the file's)."""
    assert label.tokens is not None  # a CoNLL label: checked_spans calls this only then
    offsets, position, file = [], 0, label.where.rsplit(":", 1)[0]
    for token, line in zip(label.tokens, label.token_lines):
        while position < len(text) and text[position].isspace():
            position += 1
        if text[position : position + len(token)] != token:
            raise LabelFileError(
                f"{file}:{line}", f"token {token!r} does not match the headline {text!r} at character {position}"
            )
        offsets.append((position, position + len(token)))
        position += len(token)
    if text[position:].strip():  # found by `# id`, the tokens could stop short of the headline's end
        raise LabelFileError(
            f"{file}:{label.token_lines[-1]}",
            f"the tokens end at character {position} of the headline {text!r}: {text[position:].strip()!r} is missing",
        )
    return [
        {"start": offsets[a][0], "end": offsets[b][1], "text": text[offsets[a][0] : offsets[b][1]]}
        for a, b in label.token_spans
    ]


def span_problem(start: int, end: int, length: int) -> str | None:
    """What is wrong with character span [start, end) of a text of `length` characters, or None: an empty or
    reversed span is its own mistake, not one of the text's length."""
    if start == end:
        return f"span [{start}, {end}) is empty"
    if start > end:
        return f"span [{start}, {end}) ends before it starts"
    if start < 0 or end > length:
        return f"span [{start}, {end}) is outside the text ({length} characters)"
    return None


def checked_spans(label: FileLabel, text: str) -> list[dict]:
    """The label's spans as {start, end, text} in the headline, after checking each against the text."""
    if label.tokens is not None:
        return _char_spans_of_tokens(label, text)
    spans: list[dict] = []
    for span in sorted(label.spans, key=lambda s: (s["start"], s["end"])):
        start, end = span["start"], span["end"]
        problem = span_problem(start, end, len(text))
        if problem:
            raise LabelFileError(label.where, problem)
        if span["text"] is not None and span["text"] != text[start:end]:
            raise LabelFileError(
                label.where,
                f"span text {span['text']!r} does not match {text[start:end]!r} at [{start}, {end}) of {text!r}",
            )
        if spans and start < spans[-1]["end"]:
            raise LabelFileError(
                label.where, f"spans [{spans[-1]['start']}, {spans[-1]['end']}) and [{start}, {end}) overlap"
            )
        spans.append({"start": start, "end": end, "text": text[start:end]})
    return spans


def _squeezed(text: str) -> str:
    return _WHITESPACE.sub("", text)


@dataclass
class Resolved:
    """File labels tied to headlines: {headline id: {"spans", "where"}}, and the labels that name no headline
    here (a team's labels of other runs: counted and reported, never an error)."""

    labels: dict[str, dict]
    elsewhere: list[FileLabel]

    def summary(self, examples: int = 3) -> dict:
        return {
            "labels_not_in_run": len(self.elsewhere),
            "first_not_in_run": [label.where for label in self.elsewhere[:examples]],
        }


def matching(labels: list[FileLabel], headlines: list[dict]) -> Iterator[tuple[FileLabel, list[dict]]]:
    """Each accepted label with the headlines ({id, text, date}) it names; none: it names no headline here.

    A label names its headline by id, or by exact text (plus date when the same text appears on several
    dates; without a date it labels every headline with that text). CoNLL labels without an id match the
    headline whose text has the same characters once whitespace is removed. An id whose text differs from the
    label's is an error: the file contradicts itself.
    """
    by_id = {h["id"]: h for h in headlines}
    by_text: dict[str, list[dict]] = {}
    by_squeezed: dict[str, list[dict]] = {}
    for headline in headlines:
        by_text.setdefault(headline["text"], []).append(headline)
        by_squeezed.setdefault(_squeezed(headline["text"]), []).append(headline)
    for label in accepted(labels):
        if label.id is not None:
            targets = [by_id[label.id]] if label.id in by_id else []
            if targets and label.text is not None and label.text != targets[0]["text"]:
                raise LabelFileError(
                    label.where,
                    f"text {label.text!r} is not the text of headline {label.id!r} ({targets[0]['text']!r})",
                )
        elif label.tokens is not None:
            targets = by_squeezed.get(_squeezed("".join(label.tokens)), [])
        else:
            assert label.text is not None  # a label without an id or tokens has its text (files.py checks)
            targets = [h for h in by_text.get(label.text, []) if label.date is None or str(h["date"]) == label.date]
        yield label, targets


def candidates(labels: list[FileLabel], headlines: pl.DataFrame) -> list[dict]:
    """The headlines ({id, text, date}) any of these labels could name, picked out by polars: the rest of a feed
    of a million headlines never becomes Python objects."""
    ids = [label.id for label in labels if label.id is not None]
    texts = [label.text for label in labels if label.text is not None]
    squeezed = [_squeezed("".join(label.tokens)) for label in labels if label.tokens is not None]
    keep = pl.col("id").is_in(ids) | pl.col("text").is_in(texts)
    if squeezed:
        keep = keep | pl.col("text").str.replace_all(r"\s+", "").is_in(squeezed)
    return headlines.filter(keep).select("id", "text", "date").to_dicts()


def resolve(labels: list[FileLabel], headlines: list[dict]) -> Resolved:
    """File labels tied to these headlines, each span checked against its headline's text."""
    resolved: dict[str, dict] = {}
    elsewhere: list[FileLabel] = []
    for label, targets in matching(labels, headlines):
        if not targets:
            elsewhere.append(label)
        for headline in targets:
            spans = checked_spans(label, headline["text"])
            earlier = resolved.get(headline["id"])
            if earlier and earlier["spans"] != spans:
                raise LabelFileError(label.where, f"contradicts the label of the same headline at {earlier['where']}")
            resolved.setdefault(headline["id"], {"spans": spans, "where": label.where})
    return Resolved(resolved, elsewhere)


@dataclass
class TestSet:
    """An extra test set's records {text, spans}, each headline once, and where it repeated a headline with the
    same spans (those lines are not scored again)."""

    records: list[dict]
    repeats: list[str]


def _spans_said(spans: list[dict]) -> str:
    return ", ".join(f"[{s['start']}, {s['end']})" for s in spans) or "none"


def standalone(labels: list[FileLabel]) -> TestSet:
    """The records of a file that carries its own text (an extra test set): JSONL lines need 'text'; CoNLL
    headlines read as their tokens joined by spaces. A headline given twice with the same spans is scored once
    (two files merged into one, say); with other spans the file contradicts itself, which is an error: scoring
    both would count the model wrong whatever it answers."""
    first: dict[str, tuple[str, list[dict]]] = {}  # headline: where it was first labelled, and its spans
    records, repeats = [], []
    for label in accepted(labels):
        if label.tokens is not None:
            text = " ".join(label.tokens)
        elif label.text is not None:
            text = label.text
        else:
            raise LabelFileError(label.where, "a test set line needs 'text' (an id alone names no headline here)")
        spans = checked_spans(label, text)
        if text not in first:
            first[text] = (label.where, spans)
            records.append({"text": text, "spans": spans})
            continue
        where, kept = first[text]
        if kept != spans:
            raise LabelFileError(
                label.where,
                f"headline {text!r} has spans {_spans_said(spans)} here but {_spans_said(kept)} at {where}; "
                "a test set labels each headline once",
            )
        repeats.append(label.where)
    return TestSet(records, repeats)
