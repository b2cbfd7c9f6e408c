"""What we ask the teacher: the prompt, the per-headline schema and the request, whose body keys the answer
cache (the answer schema and parsing are in replies.py).

Any OpenAI-compatible chat endpoint (HF Inference Endpoints / TGI, vLLM, llama.cpp server) takes the
request; only the structured-output field differs, and `response_format` picks it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from functools import cached_property, lru_cache
from pathlib import Path

import orjson
import yaml
from pydantic import ValidationError

from stages.core.errors import InputError
from stages.core.legacy import old_answer_key, old_spec_fingerprint
from stages.teacher.candidates import candidate_mentions
from stages.teacher.replies import ANSWER_SCHEMA, Companies

RESPONSE_FORMATS: dict[str, Callable[[dict], dict | None]] = {
    "llama_cpp": lambda schema: {"type": "json_object", "schema": schema},
    "tgi": lambda schema: {"type": "json", "value": schema},
    "openai": lambda schema: {"type": "json_schema", "json_schema": {"name": "companies", "schema": schema}},
    "none": lambda schema: None,
}


# A request body's schema and max_tokens read the same candidates: found once (callers never mutate them).
_candidates = lru_cache(maxsize=2)(candidate_mentions)


@dataclass(frozen=True)
class Extractive:
    """The per-headline answer schema: every mention one of the headline's candidates, at most max_items of
    them. Names are candidates too unless free_names (then free text of at most max_name_chars): llama.cpp
    checks a free string against the whole vocabulary at every token, ~20x slower than a choice between a few
    strings. The answer is bounded either way, so max_tokens follows from it."""

    max_words: int
    max_items: int
    free_names: bool
    max_name_chars: int

    def schema(self, headline: str) -> dict:
        candidates = _candidates(headline, self.max_words)
        mention = {"enum": candidates} if candidates else {"type": "string", "maxLength": 0}
        # a character class, not maxLength: llama.cpp matches it faster
        name = (
            {"type": "string", "pattern": f'^[^"\\\\\\x00-\\x1f]{{0,{self.max_name_chars}}}$'}
            if self.free_names
            else mention
        )
        item = {
            "type": "object",
            "required": ["mention", "name"],
            "additionalProperties": False,
            "properties": {"mention": mention, "name": name},
        }
        return {
            "type": "object",
            "required": ["companies"],
            "additionalProperties": False,
            "properties": {
                "companies": {"type": "array", "items": item, "maxItems": self.max_items if candidates else 0}
            },
        }

    def max_tokens(self, headline: str) -> int:
        """Characters of the longest answer the schema allows, with the optional space the grammar permits
        after each JSON token: no token is shorter than a character, so no answer can be cut."""
        longest = max((len(json.dumps(c)) for c in _candidates(headline, self.max_words)), default=2)
        name = self.max_name_chars + 2 if self.free_names else longest
        item = len('{"mention": , "name": }, ') + 4 + longest + name
        return len('{"companies": []} ') + 4 + self.max_items * item


def _prompt_yaml(path: str | Path) -> dict:
    """The prompt file's YAML mapping, or an InputError naming the file and what is wrong with it."""
    try:
        content = Path(path).read_bytes()
    except FileNotFoundError:
        raise InputError(f"{path}: prompt file not found (llm_label.prompt_file)") from None
    except OSError as error:  # a directory, no permission
        raise InputError(f"{path}: cannot read the prompt file ({error.strerror})") from None
    try:
        raw = yaml.safe_load(content.decode("utf-8"))
    except UnicodeDecodeError as error:
        line = content[: error.start].count(b"\n") + 1
        raise InputError(f"{path}:{line}: bad prompt file: not UTF-8 ({error.reason} at byte {error.start})") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise InputError(f"{where}: bad prompt file: not YAML ({problem})") from None
    if raw is None:
        raise InputError(f"{path}: bad prompt file: it is empty (expected 'system' and 'examples')")
    if not isinstance(raw, dict):
        raise InputError(
            f"{path}: bad prompt file: expected a mapping with 'system' and 'examples' (got {type(raw).__name__})"
        )
    return raw


def _example(path: str | Path, number: int, example) -> tuple[str, str]:
    """One few-shot example as (headline, answer JSON)."""
    where = f"{path}: bad prompt file: examples[{number}]"
    if not isinstance(example, dict) or not isinstance(example.get("headline"), str):
        raise InputError(f"{where} needs 'headline' (a string) and 'answer'")
    try:
        answer = Companies.model_validate(example.get("answer"), strict=True)
    except ValidationError as error:
        problem = error.errors()[0]
        key = ".".join(str(part) for part in problem["loc"]) or "answer"
        raise InputError(f"{where}: answer {key}: {problem['msg']}") from None
    return example["headline"], json.dumps(answer.model_dump(), ensure_ascii=False)


@dataclass(frozen=True)
class Prompt:
    system: str
    examples: tuple[tuple[str, str], ...]  # (headline, answer JSON)

    @classmethod
    def load(cls, path: str | Path) -> Prompt:
        """The prompt file: `system` (a string) and `examples` (a list of {headline, answer}). Every problem is one
        InputError naming the file (and the line, where YAML says one)."""
        raw = _prompt_yaml(path)
        if not isinstance(raw.get("system"), str) or not raw["system"].strip():
            found = "missing" if raw.get("system") is None else f"got {type(raw['system']).__name__}"
            raise InputError(f"{path}: bad prompt file: 'system' must be a non-empty string ({found})")
        examples = raw["examples"] if raw.get("examples") is not None else []  # `examples:` alone: none
        if not isinstance(examples, list):
            raise InputError(
                f"{path}: bad prompt file: 'examples' must be a list of {{headline, answer}} "
                f"(got {type(examples).__name__})"
            )
        return cls(system=raw["system"].strip(), examples=tuple(_example(path, n, e) for n, e in enumerate(examples)))

    @cached_property
    def _prefix(self) -> list[dict]:
        turns = [{"role": "system", "content": self.system}]
        for example, answer in self.examples:
            turns += [{"role": "user", "content": example}, {"role": "assistant", "content": answer}]
        return turns

    def messages(self, headline: str) -> list[dict]:
        return [*self._prefix, {"role": "user", "content": headline}]


@dataclass(frozen=True)
class RequestSpec:
    """Everything that changes the teacher's answer: a different spec is a cache miss."""

    model: str
    prompt: Prompt
    response_format: str
    generation: dict
    extractive: Extractive | None = None  # None: any JSON answer (endpoints that take no schema)
    model_file_sha256: str | None = None  # the weights behind `model` when we serve them ourselves

    def for_sample(self, index: int) -> RequestSpec:
        """The spec of the index-th self-consistency sample: same request, its own seed (and cache key)."""
        if index == 0:
            return self
        return replace(self, generation={**self.generation, "seed": self.generation["seed"] + index})

    def schema(self, headline: str) -> dict:
        return self.extractive.schema(headline) if self.extractive else ANSWER_SCHEMA

    def cache_key(self, headline: str) -> str:
        """What reaches the endpoint and nothing else: the request body (the headline's own schema and
        max_tokens included, so a change in how candidates are chosen is a miss) and the weights behind
        `model` when we serve them. A param the body does not carry (max_tokens with extractive answers)
        changes no key."""
        return self.body_key(self.body(headline))

    def body_key(self, body: dict) -> str:
        """cache_key from a body already built (building one takes most of the time)."""
        blob = orjson.dumps([self.model_file_sha256, body], option=orjson.OPT_SORT_KEYS)
        return hashlib.sha256(blob).hexdigest()

    @cached_property
    def _legacy_fingerprint(self) -> str:
        return old_spec_fingerprint(
            {
                "model": self.model,
                "model_file_sha256": self.model_file_sha256,
                "system": self.prompt.system,
                "examples": self.prompt.examples,
                "schema": ANSWER_SCHEMA,
                "extractive": asdict(self.extractive) if self.extractive else None,
                "response_format": self.response_format,
                "generation": self.generation,
            }
        )

    def legacy_cache_key(self, headline: str) -> str:
        """The key answers were cached under before cache_key covered only the request body (core/legacy.py):
        those answers are paid for, so a run finds them by it and re-files them under cache_key."""
        schema = json.dumps(self.extractive.schema(headline)) if self.extractive else ""
        return old_answer_key(self._legacy_fingerprint, headline, schema)

    def body(self, headline: str) -> dict:
        body = {"model": self.model, "messages": self.prompt.messages(headline), **self.generation}
        if self.extractive:
            body["max_tokens"] = self.extractive.max_tokens(headline)
        response_format = RESPONSE_FORMATS[self.response_format](self.schema(headline))
        if response_format:
            body["response_format"] = response_format
        return body
