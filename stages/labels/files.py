"""Human labels from files: JSONL with character spans, the Hugging Face dataset directory that
`argilla_review --export` writes, or CoNLL/IOB2 token files.

Reading is two steps. `read_label_file` (here) parses a file into `FileLabel`s (problems of form: malformed
lines, tags, keys, span labels of unknown types); label_resolve.py ties them to headlines and checks every
span against its text. Every problem stops the caller with one message naming the file, the line (or row)
and what is wrong, before anything is written.

Span labels (IOB2 types): a span without a label is a company; a label listed in the section's
`entity_labels` is one too (add `ORG` there when it stands for company), one in `ignored_labels` is left
out on purpose (PER, LOC); any other label is an error, so a typo like `compnay` can never turn a labelled
company into a human "no company". A JSONL line with Prodigy's `answer` counts only when it is `accept`:
`reject` and `ignore` are no human label (FileLabel.accepted is False; callers count them).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from stages.core.errors import InputError, ParamsError
from stages.core.stage_params import EvaluateParams, ReviewParams
from stages.labels.records import is_human


class LabelFileError(InputError):
    def __init__(self, where: str, problem: str):
        super().__init__(f"{where}: {problem}")


@dataclass
class FileLabel:
    """One labelled headline as a file gives it: keyed by id and/or text, spans as characters or tokens."""

    where: str  # "path:line" (or "dir [split] row N"), for error messages
    id: str | None = None
    text: str | None = None
    date: str | None = None
    spans: list[dict] = field(default_factory=list)  # {start, end, text?} character offsets
    tokens: list[str] | None = None  # CoNLL: the words
    token_spans: list[tuple[int, int]] = field(default_factory=list)  # CoNLL: inclusive word ranges
    token_lines: list[int] = field(default_factory=list)
    accepted: bool = True  # False: a rejected / ignored Prodigy example


@dataclass(frozen=True)
class _SpanTypes:
    """Which labels mean a company and which are left out on purpose (lower-cased), and whose params say so."""

    company: frozenset[str]
    ignored: frozenset[str]
    section: str

    def means_company(self, label: str, where: str) -> bool:
        if label.lower() in self.company:
            return True
        if label.lower() in self.ignored:
            return False
        raise LabelFileError(
            where,
            f"span label {label!r} is not a known type: add it to {self.section}.entity_labels "
            f"if it means a company, or to {self.section}.ignored_labels to leave such spans out",
        )


def require_inside(path: str | Path, directory: Path, key: str) -> None:
    """Label files must sit inside the directory dvc.yaml declares as a dependency, or DVC would not see
    them change (DVC cannot take a list of files from params as dependencies)."""
    if directory.resolve() not in Path(path).resolve().parents:
        raise ParamsError(
            f"params.yaml: {key}: {path} is not inside {directory}, the directory dvc.yaml declares as "
            f"a dependency; move it there (or point the directory param at where it is)"
        )


def read_label_files(params: ReviewParams, label_dir: Path) -> dict[str, list[FileLabel]]:
    """The labels of every file argilla_review.label_files names (each must sit inside label_dir), by path."""
    found = {}
    for path in params.label_files:
        require_inside(path, label_dir, "argilla_review.label_files")
        found[str(path)] = read_label_file(path, params)
    return found


def format_of(path: str | Path) -> str:
    """The format a path is read as: a directory is an exported dataset, .jsonl is JSONL, anything else CoNLL."""
    path = Path(path)
    if path.is_dir():
        return "hf_dataset"
    return "jsonl" if path.suffix.lower() in (".jsonl", ".ndjson") else "conll"


def read_label_file(path: str | Path, params: ReviewParams | EvaluateParams) -> list[FileLabel]:
    """Every labelled headline of a file; span types as the params section (entity_labels, ignored_labels) says."""
    path = Path(path)
    if not path.exists():
        raise LabelFileError(str(path), "label file not found")
    types = _SpanTypes(
        frozenset(label.lower() for label in params.entity_labels),
        frozenset(label.lower() for label in params.ignored_labels),
        params.SECTION,
    )
    readers = {"jsonl": _read_jsonl, "hf_dataset": _read_hf_dataset, "conll": _read_conll}
    return readers[format_of(path)](path, types)


def _check_span(raw, where: str, types: _SpanTypes) -> dict | None:
    """A span dict from a file, or None when its label is a type left out on purpose."""
    if not isinstance(raw, dict) or not all(
        isinstance(raw.get(k), int) and not isinstance(raw.get(k), bool) for k in ("start", "end")
    ):
        raise LabelFileError(where, f"malformed span {raw!r}: needs integer 'start' and 'end'")
    label = raw.get("label")
    if label is not None and not types.means_company(str(label), where):
        return None
    if raw.get("text") is not None and not isinstance(raw["text"], str):
        raise LabelFileError(where, f"malformed span {raw!r}: 'text' must be a string")
    return {"start": raw["start"], "end": raw["end"], "text": raw.get("text")}


def _label_from_mapping(row: dict, where: str, types: _SpanTypes) -> FileLabel:
    if not isinstance(row, dict):
        raise LabelFileError(where, "malformed line: expected a JSON object")
    answer = row.get("answer", "accept")  # Prodigy's verdict on the example; other formats have none
    if answer not in ("accept", "reject", "ignore"):
        raise LabelFileError(where, f"answer {answer!r} is not one of accept, reject, ignore")
    if answer != "accept":
        return FileLabel(where=where, accepted=False)
    if not isinstance(row.get("id"), str) and not isinstance(row.get("text"), str):
        raise LabelFileError(where, "malformed line: needs 'id' or 'text' to say which headline it labels")
    if not isinstance(row.get("spans"), list):
        raise LabelFileError(where, "malformed line: needs 'spans', a list of {start, end[, text]}")
    date = row.get("date")
    spans = [s for s in (_check_span(raw, where, types) for raw in row["spans"]) if s is not None]
    return FileLabel(
        where=where,
        id=row.get("id") if isinstance(row.get("id"), str) else None,
        text=row.get("text") if isinstance(row.get("text"), str) else None,
        date=str(date) if date is not None else None,
        spans=spans,
    )


def _read_jsonl(path: Path, types: _SpanTypes) -> list[FileLabel]:
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
            labels.append(_label_from_mapping(row, where, types))
    return labels


def _read_hf_dataset(path: Path, types: _SpanTypes) -> list[FileLabel]:
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
            row = {k: (str(v) if k == "date" and v is not None else v) for k, v in row.items()} | {
                "spans": row.get(column)
            }
            labels.append(_label_from_mapping(row, f"{path} [{split or 'data'}] row {number}", types))
    return labels


def _read_conll(path: Path, types: _SpanTypes) -> list[FileLabel]:
    """Token-per-line files: token first, IOB2 tag last; blank lines end a headline; `# id = X` names it."""
    labels: list[FileLabel] = []
    current: FileLabel | None = None
    open_entity: tuple[str, int, bool] | None = None  # (type, first token, is a company) of the entity being read

    def close_entity(last: int) -> None:
        nonlocal open_entity
        if open_entity and open_entity[2]:
            assert current is not None  # an entity is open only inside a headline
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
            assert current.tokens is not None  # every CoNLL label is made with its token list
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
                    open_entity = (kind, index, types.means_company(tag[2:], where))
            else:
                raise LabelFileError(where, f"unknown tag {tag!r}: expected O, B-<type> or I-<type>")
    finish()
    return labels


def accepted(labels: list[FileLabel]) -> list[FileLabel]:
    """The labels that are human labels (not a rejected or ignored Prodigy example)."""
    return [label for label in labels if label.accepted]
