"""A student behind Hugging Face Inference Endpoints' custom-handler contract, so existing clients work unchanged.

`EndpointHandler(path)` loads the student saved or exported in `path` with the student's own `load` (the predict
`evaluate` scores); `handler({"inputs": str | [str, ...], "parameters": {...}})` returns the token-classification
output: for a string, a list of `{"entity_group", "score", "word", "start", "end"}` (character offsets); for a
list, one such list per string. Parameters (all optional): `threshold` keeps entities scoring at least it (the
model decodes at its own threshold, so a lower one finds nothing more), `ignore_labels` drops those labels,
`batch_size` is the model's batch, `date` (YYYY-MM-DD) the headlines' date for linking. A bad body raises
BadRequest (a ValueError) with the HTTP status it deserves, naming the input at fault (a text that is not Unicode
a model can read, a lone surrogate, is refused here rather than failing inside the model). `student` (registry
name) and `version` (layout.model_version: the hash tag caches under) say which model answers, for a server to
report.

A folder exported with a security master (layout.MASTER_DIR, written by the export stage from params `link`)
links each entity as the link stage does: it gains `symbol` (null when unknown or ambiguous), `link_score`,
`evidence` and `candidates`, as of `parameters.date` (without one: as of the day the request is served).
`master` describes the bundled master, or is None when the folder has none (entities then carry no symbol).

An exported folder carries this module and the code it imports, with a `handler.py` that imports it
(stages/serving/package.py), so Inference Endpoints runs it with no checkout of this repository;
scripts/serve.py serves the same handler locally.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from stages.core.errors import ModelError
from stages.securities.link import Linker
from stages.securities.master import describe, load_saved_master
from stages.securities.settings import LinkerParams
from stages.serving.layout import MASTER_DIR, model_version, verify_folder
from stages.students import registry
from stages.students.settings import read_settings

MAX_TEXTS = 64  # texts in one request: more is refused (413), so one client cannot hold the model for long
MAX_CHARS = 2000  # characters in one text (a headline has ~80; GLiNER reads at most 128 tokens anyway)
PARAMETERS = ("batch_size", "date", "ignore_labels", "threshold")


class BadRequest(ValueError):
    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Request:
    texts: list[str]
    single: bool  # inputs was one string: the answer is one list of entities, not a list of them
    threshold: float | None = None
    ignore_labels: tuple[str, ...] = ()
    batch_size: int = 32
    date: dt.date | None = None  # the headlines' date, for linking (None: the day it is served)

    @property
    def options(self) -> tuple:
        """What must be equal for two requests to share one model call."""
        return self.threshold, self.ignore_labels, self.batch_size


def _number(parameters: dict, key: str, kind: type, low: float, high: float):
    value = parameters[key]
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float) if kind is float else int)
        or not low <= value <= high
    ):
        raise BadRequest(
            f"parameters.{key} must be {'a number' if kind is float else 'an integer'} from {low} to "
            f"{high}; got {value!r}"
        )
    return kind(value)


def parse_request(data, max_texts: int = MAX_TEXTS, max_chars: int = MAX_CHARS) -> Request:
    """The request in an Inference Endpoints body, checked; BadRequest names what is wrong. Empty strings are
    allowed (no entities); an empty list gives an empty list."""
    if not isinstance(data, dict):
        raise BadRequest(
            f'the body must be a JSON object {{"inputs": "..." or ["...", ...], "parameters": {{...}}}}; '
            f"got {type(data).__name__}"
        )
    if "inputs" not in data:
        raise BadRequest('missing "inputs": a string or a list of strings')
    inputs = data["inputs"]
    single = isinstance(inputs, str)
    texts = [inputs] if single else inputs
    if not isinstance(texts, list):
        raise BadRequest(f'"inputs" must be a string or a list of strings; got {type(inputs).__name__}')
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise BadRequest(f'"inputs"[{i}] must be a string; got {type(text).__name__}')
        if len(text) > max_chars:
            raise BadRequest(f'"inputs"[{i}] has {len(text)} characters; this server takes at most {max_chars}', 413)
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as bad:  # JSON's "\ud800" decodes to a str no tokenizer can encode
            raise BadRequest(
                f'"inputs"[{i}] holds a lone surrogate U+{ord(text[bad.start]):04X} at character {bad.start}'
            ) from None
    if len(texts) > max_texts:
        raise BadRequest(
            f'"inputs" has {len(texts)} texts; this server takes at most {max_texts} per request: '
            f"set tag.batch_size to at most {max_texts}",
            413,
        )
    parameters = {} if data.get("parameters") is None else data["parameters"]
    if not isinstance(parameters, dict):
        raise BadRequest(f'"parameters" must be an object; got {type(parameters).__name__}')
    unknown = sorted(set(parameters) - set(PARAMETERS))
    if unknown:
        raise BadRequest(f"unknown parameter(s) {unknown}; allowed: {list(PARAMETERS)}")
    request: dict[str, Any] = {"texts": texts, "single": single}  # Request's fields
    if parameters.get("threshold") is not None:
        request["threshold"] = _number(parameters, "threshold", float, 0, 1)
    if parameters.get("batch_size") is not None:
        request["batch_size"] = _number(parameters, "batch_size", int, 1, 256)
    if parameters.get("date") is not None:
        try:
            request["date"] = dt.date.fromisoformat(parameters["date"])
        except (TypeError, ValueError):
            raise BadRequest(f"parameters.date must be a date written YYYY-MM-DD; got {parameters['date']!r}") from None
    labels = parameters.get("ignore_labels")
    if labels is not None:
        if not isinstance(labels, list) or not all(isinstance(label, str) for label in labels):
            raise BadRequest(f"parameters.ignore_labels must be a list of strings; got {labels!r}")
        request["ignore_labels"] = tuple(sorted(set(labels)))
    return Request(**request)


def entities(text: str, spans: list[dict], label: str, request: Request, linker: Linker | None = None) -> list[dict]:
    """A student's spans in the token-classification output shape, filtered by the request's parameters, each
    linked to its security where the folder bundles a master."""
    if label in request.ignore_labels:
        return []
    found = [
        {
            "entity_group": label,
            "score": float(s["score"]),
            "word": text[s["start"] : s["end"]],
            "start": s["start"],
            "end": s["end"],
        }
        for s in spans
        if request.threshold is None or s["score"] >= request.threshold
    ]
    if linker is not None:
        day = request.date or dt.date.today()
        for entity in found:
            link = linker.link(entity["word"], entity["start"], entity["end"], text, day)
            entity |= {
                "symbol": link.symbol,
                "link_score": link.score,
                "evidence": link.evidence,
                "candidates": [asdict(c) for c in link.candidates],
            }
    return found


def bundled_linker(model_dir: Path) -> tuple[Linker | None, dict | None]:
    """The linker of the master a folder bundles, and what the master is; (None, None) without one."""
    folder = model_dir / MASTER_DIR
    if not folder.exists():
        return None, None
    master, settings = load_saved_master(folder)
    try:
        linker = Linker(master, LinkerParams.model_validate(settings))
    except ValidationError as error:
        raise ModelError(f"{folder}: linker settings unreadable: {error.errors()[0]['msg']}") from None
    return linker, describe(master, [f"{MASTER_DIR}/"])


class EndpointHandler:
    """What Inference Endpoints instantiates once per replica and calls per request (see the module docstring).

    The folder's predict settings name its student by registry name; `student` overrides that for a folder whose
    settings name none (a model saved by hand)."""

    def __init__(
        self,
        path: str | Path = "",
        student: str | None = None,
        max_texts: int = MAX_TEXTS,
        max_chars: int = MAX_CHARS,
    ):
        model_dir = Path(path or ".")
        verify_folder(model_dir)  # an export as written (manifest), settings and the files its student needs
        settings = read_settings(model_dir)
        self.student = student or registry.student_name(settings, model_dir)
        self.version = model_version(model_dir)
        self.predict = registry.student(self.student).load(model_dir)
        self.label, self.max_texts, self.max_chars = settings["entity_label"], max_texts, max_chars
        self.linker, self.master = bundled_linker(model_dir)

    def __call__(self, data: dict) -> list:
        request = parse_request(data, self.max_texts, self.max_chars)
        found = self.run(request.texts, request.batch_size)
        results = [entities(t, spans, self.label, request, self.linker) for t, spans in zip(request.texts, found)]
        return results[0] if request.single else results

    def run(self, texts: list[str], batch_size: int = 32) -> list[list[dict]]:
        """The student's spans (with scores) for each text; blank texts get none without asking the model."""
        asked = [i for i, text in enumerate(texts) if text.strip()]
        found = self.predict([texts[i] for i in asked], batch_size) if asked else []
        spans: list[list[dict]] = [[] for _ in texts]
        for i, predicted in zip(asked, found):
            spans[i] = predicted
        return spans
