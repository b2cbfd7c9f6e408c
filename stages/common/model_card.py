"""Model cards for the students, rendered from templates/model_card.md.j2 (no timestamps: a rerun with the
same data and params writes the same card)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import jinja2

TEMPLATE = Path(__file__).parent / "templates" / "model_card.md.j2"
LIBRARIES = ("torch", "transformers", "gliner", "span-marker")


def library_versions() -> dict[str, str]:
    found = {}
    for name in LIBRARIES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            continue
    return found


@dataclass
class CardData:
    title: str
    module: str                 # the stages.common module that loads it
    directory: str
    base_model: str
    revision: str | None
    entity_label: str
    epochs: int
    sizes: dict                 # train, train_human, valid, valid_human
    best: dict                  # the kept epoch's history row
    params: dict
    examples: list[dict] = field(default_factory=list)
    versions: dict = field(default_factory=library_versions)


def render(card: CardData) -> str:
    environment = jinja2.Environment(keep_trailing_newline=True, undefined=jinja2.StrictUndefined)
    return environment.from_string(TEMPLATE.read_text()).render(**asdict(card))


def label_examples(records: list[dict], count: int = 3) -> list[dict]:
    """The first few training records that name a company (records come sorted by id: a fixed choice)."""
    return [{"text": r["text"], "spans": r["spans"]} for r in records if r["spans"]][:count]
