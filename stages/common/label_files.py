"""Human labels from files: JSONL with character spans, the Hugging Face dataset directory that
`argilla_review --export` writes, or CoNLL/IOB2 token files.

Reading is two steps. `read_label_file` parses a file into `FileLabel`s (problems of form: malformed
lines, tags, keys). `resolve` ties them to known headlines and checks every span against the headline's
text (offsets, span text, overlaps, unknown id or text, contradicting labels); `standalone` does the same
for files that carry their own text (extra test sets). Every problem stops the caller with one message
naming the file, the line (or row) and what is wrong, before anything is written.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from stages.common.records import is_human

_WHITESPACE = re.compile(r"\s+")


class LabelFileError(SystemExit):
    def __init__(self, where: str, problem: str):
        super().__init__(f"{where}: {problem}")


@dataclass
class FileLabel:
    """One labelled headline as a file gives it: keyed by id and/or text, spans as characters or tokens."""
    where: str                                   # "path:line" (or "dir [split] row N"), for error messages
    id: str | None = None
    text: str | None = None
    date: str | None = None
    spans: list[dict] = field(default_factory=list)               # {start, end, text?} character offsets
    tokens: list[str] | None = None                               # CoNLL: the words
    token_spans: list[tuple[int, int]] = field(default_factory=list)  # CoNLL: inclusive word ranges
    token_lines: list[int] = field(default_factory=list)


def require_inside(path: str | Path, directory: Path, key: str) -> None:
    """Label files must sit inside the directory dvc.yaml declares as a dependency, or DVC would not see
    them change (DVC cannot take a list of files from params as dependencies)."""
    if directory.resolve() not in Path(path).resolve().parents:
        raise SystemExit(f"params.yaml: {key}: {path} is not inside {directory}, the directory dvc.yaml declares as "
                         f"a dependency; move it there (or point the directory param at where it is)")


def format_of(path: str | Path) -> str:
    """The format a path is read as: a directory is an exported dataset, .jsonl is JSONL, anything else CoNLL."""
    path = Path(path)
    if path.is_dir():
        return "hf_dataset"
    return "jsonl" if path.suffix.lower() in (".jsonl", ".ndjson") else "conll"


def read_label_file(path: str | Path, entity_labels: list[str]) -> list[FileLabel]:
    path = Path(path)
    if not path.exists():
        raise LabelFileError(str(path), "label file not found")
    wanted = {label.lower() for label in entity_labels}
    readers = {"jsonl": _read_jsonl, "hf_dataset": _read_hf_dataset, "conll": _read_conll}
    return readers[format_of(path)](path, wanted)


def _check_span(raw, where: str, wanted: set[str]) -> dict | None:
    """A span dict from a file, or None when its label is another entity type."""
    if not isinstance(raw, dict) or not all(isinstance(raw.get(k), int) and not isinstance(raw.get(k), bool)
                                            for k in ("start", "end")):
        raise LabelFileError(where, f"malformed span {raw!r}: needs integer 'start' and 'end'")
    label = raw.get("label")
    if label is not None and str(label).lower() not in wanted:
        return None
    if raw.get("text") is not None and not isinstance(raw["text"], str):
        raise LabelFileError(where, f"malformed span {raw!r}: 'text' must be a string")
    return {"start": raw["start"], "end": raw["end"], "text": raw.get("text")}


def _label_from_mapping(row: dict, where: str, wanted: set[str]) -> FileLabel:
    if not isinstance(row, dict):
        raise LabelFileError(where, "malformed line: expected a JSON object")
    if not isinstance(row.get("id"), str) and not isinstance(row.get("text"), str):
        raise LabelFileError(where, "malformed line: needs 'id' or 'text' to say which headline it labels")
    if not isinstance(row.get("spans"), list):
        raise LabelFileError(where, "malformed line: needs 'spans', a list of {start, end[, text]}")
    date = row.get("date")
    spans = [s for s in (_check_span(raw, where, wanted) for raw in row["spans"]) if s is not None]
    return FileLabel(where=where, id=row.get("id") if isinstance(row.get("id"), str) else None,
                     text=row.get("text") if isinstance(row.get("text"), str) else None,
                     date=str(date) if date is not None else None, spans=spans)


def _read_jsonl(path: Path, wanted: set[str]) -> list[FileLabel]:
    labels = []
    with open(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            where = f"{path}:{number}"
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as error:
                raise LabelFileError(where, f"not UTF-8 ({error.reason} at byte {error.start})") from error
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                raise LabelFileError(where, f"malformed line: {error.msg} (column {error.colno})") from error
            labels.append(_label_from_mapping(row, where, wanted))
    return labels


def _read_hf_dataset(path: Path, wanted: set[str]) -> list[FileLabel]:
    """Rows of every split, spans from `label_spans` (what `argilla_review --export` writes) or `spans`; when the
    dataset says where a label came from, only the human ones."""
    from datasets import DatasetDict, load_from_disk

    try:
        loaded = load_from_disk(str(path))
    except (FileNotFoundError, ValueError) as error:
        raise LabelFileError(str(path), f"not a dataset saved with save_to_disk ({error})") from error
    splits = loaded if isinstance(loaded, DatasetDict) else {"": loaded}
    labels = []
    for split, dataset in sorted(splits.items()):
        column = "label_spans" if "label_spans" in dataset.column_names else "spans"
        for number, row in enumerate(dataset):
            if "label_source" in row and not is_human(row):
                continue
            row = {k: (str(v) if k == "date" and v is not None else v) for k, v in row.items()} | {"spans": row.get(column)}
            labels.append(_label_from_mapping(row, f"{path} [{split or 'data'}] row {number}", wanted))
    return labels


def _read_conll(path: Path, wanted: set[str]) -> list[FileLabel]:
    """Token-per-line files: token first, IOB2 tag last; blank lines end a headline; `# id = X` names it."""
    labels: list[FileLabel] = []
    current: FileLabel | None = None
    open_entity: tuple[str, int] | None = None  # (type, first token) of the entity being read

    def close_entity(last: int) -> None:
        nonlocal open_entity
        if open_entity and open_entity[0] in wanted:
            current.token_spans.append((open_entity[1], last))
        open_entity = None

    def finish() -> None:
        nonlocal current
        if current and current.tokens:
            close_entity(len(current.tokens) - 1)
            labels.append(current)
        current = None

    with open(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            where = f"{path}:{number}"
            try:
                line = raw.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError as error:
                raise LabelFileError(where, f"not UTF-8 ({error.reason} at byte {error.start})") from error
            if not line.strip():
                finish()
                continue
            if line.startswith("-DOCSTART-"):
                continue
            if line.startswith("#"):
                match = re.match(r"#\s*id\s*=\s*(\S+)", line)
                if match:
                    finish()
                    current = FileLabel(where=where, id=match.group(1), tokens=[])
                continue
            columns = line.split()
            if len(columns) < 2:
                raise LabelFileError(where, f"malformed line {line!r}: expected a token and its tag")
            token, tag = columns[0], columns[-1]
            if current is None:
                current = FileLabel(where=where, tokens=[])
            index = len(current.tokens)
            current.tokens.append(token)
            current.token_lines.append(number)
            if tag == "O":
                close_entity(index - 1)
            elif tag[:2] in ("B-", "I-") and len(tag) > 2:
                kind = tag[2:].lower()
                if tag[0] == "I" and (open_entity is None or open_entity[0] != kind):
                    raise LabelFileError(where, f"tag {tag} does not continue an entity (IOB2 needs B-{tag[2:]} first)")
                if tag[0] == "B":
                    close_entity(index - 1)
                    open_entity = (kind, index)
            else:
                raise LabelFileError(where, f"unknown tag {tag!r}: expected O, B-<type> or I-<type>")
    finish()
    return labels


def _char_spans_of_tokens(label: FileLabel, text: str) -> list[dict]:
    """Place each token in the text in order (whitespace between tokens may differ from the file's)."""
    offsets, position = [], 0
    for token, line in zip(label.tokens, label.token_lines):
        while position < len(text) and text[position].isspace():
            position += 1
        if text[position:position + len(token)] != token:
            raise LabelFileError(f"{label.where.rsplit(':', 1)[0]}:{line}",
                                 f"token {token!r} does not match the headline {text!r} at character {position}")
        offsets.append((position, position + len(token)))
        position += len(token)
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
    for label in labels:
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
    for label in labels:
        if label.tokens is not None:
            text = " ".join(label.tokens)
        elif label.text is not None:
            text = label.text
        else:
            raise LabelFileError(label.where, "a test set line needs 'text' (an id alone names no headline here)")
        records.append({"text": text, "spans": checked_spans(label, text)})
    return records
