"""The security master: which symbol names which company, and from when to when.

A master file (CSV, JSONL or parquet) has one row per symbol and period: `symbol` and `name` (required),
`aliases` (a list, or in CSV one string split on "|"), `exchange` and `country` (optional), `valid_from` and
`valid_to` (optional YYYY-MM-DD, both inclusive; empty means open), and `security_id` (optional, default the
symbol): rows that share it are one company under successive symbols or names, so a rename is two rows, and a
ticker reused by another company is two rows with different ids. Several files may be given: the rows of a later
file with a security_id replace the earlier files' rows of that id (a supplement dates or corrects the source).
Accepted aliases (alias, symbol[, valid_from, valid_to]) join the master after it is read.

Every problem names the file and its line (CSV: the line in the file, header = 1; JSONL: the line; parquet: the
row), as the label files do; a symbol may name one security at a time (overlapping periods are an error).
"""

from __future__ import annotations

import csv
import datetime as dt
import json
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from stages.core.errors import InputError
from stages.core.names import normalise_name
from stages.core.stage_params import strict_date

MASTER_COLUMNS = ["symbol", "name", "aliases", "exchange", "country", "valid_from", "valid_to", "security_id"]
ALIAS_COLUMNS = ["alias", "symbol", "valid_from", "valid_to"]
ALIAS_SEPARATOR = "|"
MIN_PREFIX = 3  # characters of a name's first words that stand for it ("G" of "G-III Apparel" does not)
# Words that end company names ("Apple Inc.", "Carnival Corporation & plc") and say nothing about which one
NAME_ENDINGS = frozenset(
    "inc incorporated corp corporation co company ltd limited plc llc lp group holdings holding sa ag nv se "
    "spa & and".split()
)


class MasterError(InputError):
    def __init__(self, where: str, problem: str):
        super().__init__(f"{where}: {problem}")


def name_form(name: str) -> str:
    """The form names are compared in: case-folded words, no leading "the", no legal ending ("Inc", "& plc")."""
    form = normalise_name(name, NAME_ENDINGS)
    return form.removeprefix("the ") if form.startswith("the ") and len(form) > 4 else form


class Security(BaseModel):
    """One master row: a symbol naming one company over one period (both ends inclusive, None: open)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    symbol: str
    name: str
    aliases: tuple[str, ...] = ()
    exchange: str | None = None
    country: str | None = None
    valid_from: dt.date | None = None
    valid_to: dt.date | None = None
    security_id: str = ""  # blank: the symbol
    where: str = ""  # file:line, for messages

    _dates = field_validator("valid_from", "valid_to", mode="before")(strict_date)

    @field_validator("symbol", "name")
    @classmethod
    def not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty")
        return value.strip()

    @field_validator("aliases", mode="before")
    @classmethod
    def alias_list(cls, value: Any) -> tuple[str, ...]:
        if value is None:
            return ()
        items = value.split(ALIAS_SEPARATOR) if isinstance(value, str) else value
        if not isinstance(items, list | tuple) or not all(isinstance(a, str) for a in items):
            raise ValueError(f"expected a list of names or one string of names split on {ALIAS_SEPARATOR!r}")
        return tuple(a.strip() for a in items if a.strip())

    def model_post_init(self, _context: Any) -> None:
        if not self.security_id:
            object.__setattr__(self, "security_id", self.symbol)
        if self.valid_from and self.valid_to and self.valid_from > self.valid_to:
            raise ValueError(f"valid_from {self.valid_from} is after valid_to {self.valid_to}")

    def valid_on(self, day: dt.date | None) -> bool:
        if day is None:
            return self.valid_to is None
        return (self.valid_from is None or self.valid_from <= day) and (self.valid_to is None or day <= self.valid_to)

    def forms(self) -> set[str]:
        return {f for f in (name_form(n) for n in (self.name, *self.aliases)) if f}


def _blank_to_none(row: dict[str, Any]) -> dict[str, Any]:
    return {k: (None if isinstance(v, str) and not v.strip() else v) for k, v in row.items()}


def _rows(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """(file:line, row) of a master or alias file, by its extension."""
    suffix = path.suffix.lower()
    if suffix == ".csv":
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            for row in reader:
                yield f"{path}:{reader.line_num}", _blank_to_none(row)
    elif suffix in (".jsonl", ".json"):
        with open(path, encoding="utf-8") as f:
            for number, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as error:
                    raise MasterError(f"{path}:{number}", f"malformed line: {error.msg}") from None
                if not isinstance(row, dict):
                    raise MasterError(f"{path}:{number}", "malformed line: expected a JSON object")
                yield f"{path}:{number}", _blank_to_none(row)
    elif suffix == ".parquet":
        for number, row in enumerate(pl.read_parquet(path).iter_rows(named=True), 1):
            yield f"{path} row {number}", _blank_to_none(row)
    else:
        raise MasterError(str(path), "unknown format: expected .csv, .jsonl or .parquet")


def _problem(error: ValidationError) -> str:
    item = error.errors()[0]
    key = ".".join(str(p) for p in item["loc"])
    message = item["msg"].removeprefix("Value error, ")
    if item["type"] == "extra_forbidden":
        return f"unknown column {key!r} (allowed: {', '.join(MASTER_COLUMNS)})"
    if item["type"] == "missing":
        return f"missing {key!r}"
    return f"{key}: {item.get('input')!r} is not allowed: {message}" if key else message


def read_securities(path: Path) -> list[Security]:
    if not path.exists():
        raise InputError(f"{path}: not found (a master file named in params.yaml link.master_files)")
    found = []
    for where, row in _rows(path):
        try:
            found.append(Security.model_validate({**row, "security_id": row.get("security_id") or "", "where": where}))
        except ValidationError as error:
            raise MasterError(where, _problem(error)) from None
    return found


@dataclass(frozen=True)
class AcceptedAlias:
    alias: str
    symbol: str
    valid_from: dt.date | None
    valid_to: dt.date | None
    where: str


def read_accepted_aliases(path: Path) -> list[AcceptedAlias]:
    """The aliases a reviewer accepted (link's proposals, copied or edited): each joins the master rows of its
    symbol that are valid in its period."""
    if not path.exists():
        raise InputError(f"{path}: not found (params.yaml link.accepted_aliases; an empty file has a header only)")
    found = []
    for where, row in _rows(path):
        unknown = sorted(set(row) - set(ALIAS_COLUMNS))
        if unknown:
            raise MasterError(where, f"unknown column(s) {unknown} (allowed: {', '.join(ALIAS_COLUMNS)})")
        alias, symbol = (row.get("alias") or "").strip(), (row.get("symbol") or "").strip()
        if not alias or not symbol:
            raise MasterError(where, "needs an alias and a symbol")
        try:
            start, end = strict_date(row.get("valid_from")), strict_date(row.get("valid_to"))
        except ValueError as error:
            raise MasterError(where, f"valid_from/valid_to: {error}") from None
        if start and end and start > end:
            raise MasterError(where, f"valid_from {start} is after valid_to {end}")
        found.append(AcceptedAlias(alias, symbol, start, end, where))
    return found


def _overlap(a: Security, b: Security) -> bool:
    return (a.valid_to is None or b.valid_from is None or b.valid_from <= a.valid_to) and (
        b.valid_to is None or a.valid_from is None or a.valid_from <= b.valid_to
    )


class Master:
    """The rows of the master files, indexed for point-in-time lookups by symbol, name form and security id."""

    def __init__(self, securities: Iterable[Security]):
        self.securities = sorted(securities, key=lambda s: (s.symbol, s.valid_from or dt.date.min))
        self.by_symbol: dict[str, list[Security]] = defaultdict(list)
        self.by_id: dict[str, list[Security]] = defaultdict(list)
        for security in self.securities:
            for other in self.by_symbol[security.symbol]:
                if _overlap(security, other):
                    raise MasterError(
                        security.where,
                        f"symbol {security.symbol} also names {other.name!r} ({other.where}) in an overlapping "
                        f"period: give each row valid_from/valid_to",
                    )
            self.by_symbol[security.symbol].append(security)
            self.by_id[security.security_id].append(security)
        self.by_form: dict[str, list[Security]] = defaultdict(list)
        self.by_prefix: dict[str, list[Security]] = defaultdict(list)  # "micron" of "micron technology"
        for security in self.securities:
            forms = security.forms()
            for form in forms:
                self.by_form[form].append(security)
            prefixes = {" ".join(words[:k]) for words in (f.split() for f in forms) for k in range(1, len(words))}
            for prefix in sorted(prefixes - forms):
                if len(prefix) >= MIN_PREFIX:
                    self.by_prefix[prefix].append(security)

    def add_aliases(self, accepted: Iterable[AcceptedAlias]) -> Master:
        """A master with the accepted aliases on the rows of their symbols valid in their periods. An alias of a
        symbol no row names adds a row for it (a security the feed's own symbols taught), named by the alias, over
        the alias's period; one of a symbol whose rows all lie outside its period is an error."""
        extra: dict[int, list[str]] = defaultdict(list)  # by the row's place in self.securities
        place = {id(row): n for n, row in enumerate(self.securities)}
        added: dict[str, Security] = {}
        for alias in accepted:
            period = Security(
                symbol=alias.symbol,
                name=alias.alias,
                valid_from=alias.valid_from,
                valid_to=alias.valid_to,
                where=alias.where,
            )
            known = self.by_symbol.get(alias.symbol, [])
            rows = [row for row in known if _overlap(row, period)]
            if known and not rows:
                raise MasterError(alias.where, f"symbol {alias.symbol} is in no master row of that period")
            if not known:
                first = added.setdefault(alias.symbol, period)
                if first is not period:
                    added[alias.symbol] = first.model_copy(update={"aliases": (*first.aliases, alias.alias)})
            for row in rows:
                extra[place[id(row)]].append(alias.alias)
        kept = [
            row.model_copy(update={"aliases": row.aliases + tuple(extra[n])}) if n in extra else row
            for n, row in enumerate(self.securities)
        ]
        return Master(kept + list(added.values()))

    def as_of(self, rows: Iterable[Security], day: dt.date | None) -> list[Security]:
        """The securities the rows stand for on `day`: a row valid then, or else the row of the same company
        (security id) valid then (a name or ticker used before a rename finds the symbol of the day)."""
        found: dict[str, Security] = {}
        for row in rows:
            if row.valid_on(day):
                found.setdefault(row.security_id, row)
        for row in rows:
            if row.security_id not in found:
                current = next((s for s in self.by_id[row.security_id] if s.valid_on(day)), None)
                if current is not None:
                    found[row.security_id] = current
        return list(found.values())

    def date_range(self) -> tuple[dt.date | None, dt.date | None]:
        starts = [s.valid_from for s in self.securities if s.valid_from]
        ends = [s.valid_to for s in self.securities if s.valid_to]
        return (min(starts) if starts else None, max(ends) if ends else None)


SAVED_MASTER, SAVED_LINKER = "securities.jsonl", "linker.json"  # a master bundled in a folder (save_master)


def save_master(master: Master, linker: BaseModel, folder: Path) -> None:
    """The master as linked (accepted aliases joined) and the linker's settings, in `folder`, byte for byte the
    same for the same master: what a served student links against (load_saved_master)."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = [s.model_dump(mode="json", exclude={"where"}) for s in master.securities]
    (folder / SAVED_MASTER).write_text(
        "".join(json.dumps(row, sort_keys=True, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8"
    )
    (folder / SAVED_LINKER).write_text(json.dumps(linker.model_dump(mode="json"), indent=2, sort_keys=True) + "\n")


def load_saved_master(folder: Path) -> tuple[Master, dict]:
    """A bundled master and its linker settings (raw: the caller validates them)."""
    master = Master(read_securities(folder / SAVED_MASTER))
    return master, json.loads((folder / SAVED_LINKER).read_text(encoding="utf-8"))


def describe(master: Master, files: list[str]) -> dict:
    """What a master is, in numbers, for metrics, a model card and a server's /health."""
    start, end = master.date_range()
    return {
        "files": files,
        "rows": len(master.securities),
        "symbols": len(master.by_symbol),
        "securities": len(master.by_id),
        "name_forms": len(master.by_form),
        "dated_from": start.isoformat() if start else None,
        "dated_to": end.isoformat() if end else None,
    }


def merge_files(files: Iterable[list[Security]]) -> list[Security]:
    """The rows of the files in order: a later file's rows of a security id replace all the earlier files' rows of
    that id (a supplement dates a package's open-ended row, or gives it its earlier symbols)."""
    merged: list[Security] = []
    for rows in files:
        replaced = {row.security_id for row in rows}
        merged = [row for row in merged if row.security_id not in replaced] + rows
    return merged


def load_master(files: Iterable[Path], accepted_aliases: Path | None) -> Master:
    master = Master(merge_files(read_securities(path) for path in files))
    return master.add_aliases(read_accepted_aliases(accepted_aliases)) if accepted_aliases else master
