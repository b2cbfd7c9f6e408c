"""File labels (label_files.py) tied to headlines: every span checked against the headline's text (offsets,
span text, overlaps, unknown id or text, CoNLL tokens that do not cover the whole headline, contradicting
labels), each problem one message naming the file and line."""
from __future__ import annotations

import re

from stages.common.label_files import FileLabel, LabelFileError, accepted

_WHITESPACE = re.compile(r"\s+")


def _char_spans_of_tokens(label: FileLabel, text: str) -> list[dict]:
    """Place each token in the text in order (whitespace between tokens may differ from the file's)."""
    offsets, position, file = [], 0, label.where.rsplit(":", 1)[0]
    for token, line in zip(label.tokens, label.token_lines):
        while position < len(text) and text[position].isspace():
            position += 1
        if text[position:position + len(token)] != token:
            raise LabelFileError(f"{file}:{line}",
                                 f"token {token!r} does not match the headline {text!r} at character {position}")
        offsets.append((position, position + len(token)))
        position += len(token)
    if text[position:].strip():  # found by `# id`, the tokens could stop short of the headline's end
        raise LabelFileError(f"{file}:{label.token_lines[-1]}",
                             f"the tokens end at character {position} of the headline {text!r}: "
                             f"{text[position:].strip()!r} is missing")
    return [{"start": offsets[a][0], "end": offsets[b][1], "text": text[offsets[a][0]:offsets[b][1]]}
            for a, b in label.token_spans]


def checked_spans(label: FileLabel, text: str) -> list[dict]:
    """The label's spans as {start, end, text} in the headline, after checking each against the text."""
    if label.tokens is not None:
        return _char_spans_of_tokens(label, text)
    spans = []
    for span in sorted(label.spans, key=lambda s: (s["start"], s["end"])):
        start, end = span["start"], span["end"]
        if not 0 <= start < end <= len(text):
            raise LabelFileError(label.where, f"span [{start}, {end}) is outside the text ({len(text)} characters)")
        if span["text"] is not None and span["text"] != text[start:end]:
            raise LabelFileError(label.where, f"span text {span['text']!r} does not match {text[start:end]!r} "
                                              f"at [{start}, {end}) of {text!r}")
        if spans and start < spans[-1]["end"]:
            raise LabelFileError(label.where, f"spans [{spans[-1]['start']}, {spans[-1]['end']}) and "
                                              f"[{start}, {end}) overlap")
        spans.append({"start": start, "end": end, "text": text[start:end]})
    return spans


def _squeezed(text: str) -> str:
    return _WHITESPACE.sub("", text)


def resolve(labels: list[FileLabel], headlines: list[dict]) -> dict[str, dict]:
    """{headline id: {"spans", "where"}} for file labels, tied to known headlines ({id, text, date}).

    A label names its headline by id, or by exact text (plus date when the same text appears on several
    dates; without a date it labels every headline with that text). CoNLL labels without an id match the
    headline whose text has the same characters once whitespace is removed.
    """
    by_id = {h["id"]: h for h in headlines}
    by_text: dict[str, list[dict]] = {}
    by_squeezed: dict[str, list[dict]] = {}
    for headline in headlines:
        by_text.setdefault(headline["text"], []).append(headline)
        by_squeezed.setdefault(_squeezed(headline["text"]), []).append(headline)
    resolved: dict[str, dict] = {}
    for label in accepted(labels):
        if label.id is not None:
            if label.id not in by_id:
                raise LabelFileError(label.where, f"unknown headline id {label.id!r}")
            targets = [by_id[label.id]]
            if label.text is not None and label.text != targets[0]["text"]:
                raise LabelFileError(label.where, f"text {label.text!r} is not the text of headline {label.id!r} "
                                                  f"({targets[0]['text']!r})")
        elif label.tokens is not None:
            targets = by_squeezed.get(_squeezed("".join(label.tokens)), [])
            if not targets:
                raise LabelFileError(label.where, f"unknown headline: no headline reads {' '.join(label.tokens)!r}")
        else:
            targets = [h for h in by_text.get(label.text, []) if label.date is None or str(h["date"]) == label.date]
            if not targets:
                raise LabelFileError(label.where, f"unknown headline text {label.text!r}"
                                                  + (f" on {label.date}" if label.date else ""))
        for headline in targets:
            spans = checked_spans(label, headline["text"])
            earlier = resolved.get(headline["id"])
            if earlier and earlier["spans"] != spans:
                raise LabelFileError(label.where, f"contradicts the label of the same headline at {earlier['where']}")
            resolved.setdefault(headline["id"], {"spans": spans, "where": label.where})
    return resolved


def standalone(labels: list[FileLabel]) -> list[dict]:
    """Records {text, spans} of a file that carries its own text (an extra test set): JSONL lines need
    'text'; CoNLL headlines read as their tokens joined by spaces."""
    records = []
    for label in accepted(labels):
        if label.tokens is not None:
            text = " ".join(label.tokens)
        elif label.text is not None:
            text = label.text
        else:
            raise LabelFileError(label.where, "a test set line needs 'text' (an id alone names no headline here)")
        records.append({"text": text, "spans": checked_spans(label, text)})
    return records
