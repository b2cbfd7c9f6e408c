"""What we ask the teacher and how we read its answer: the answer schema, the prompt, the request (whose
body keys the answer cache) and parsing.

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
from pydantic import BaseModel, ValidationError

from stages.teacher.candidates import candidate_mentions


class Company(BaseModel):
    mention: str  # as written in the headline
    name: str  # its normalised (official) name


class Companies(BaseModel):
    """What the teacher must answer: one {mention, name} pair per company, so the two cannot differ in number."""

    companies: list[Company]


ANSWER_SCHEMA = Companies.model_json_schema()

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


@dataclass(frozen=True)
class Prompt:
    system: str
    examples: tuple[tuple[str, str], ...]  # (headline, answer JSON)

    @classmethod
    def load(cls, path: str | Path) -> Prompt:
        with open(path, encoding="utf-8") as f:
            raw = yaml.safe_load(f)
        try:
            examples = tuple(
                (e["headline"], json.dumps(Companies(**e["answer"]).model_dump(), ensure_ascii=False))
                for e in raw.get("examples", [])
            )
            return cls(system=raw["system"].strip(), examples=examples)
        except (KeyError, TypeError, ValidationError) as error:
            raise SystemExit(f"{path}: bad prompt file: {error}") from error

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
        blob = json.dumps(
            {
                "model": self.model,
                "model_file_sha256": self.model_file_sha256,
                "system": self.prompt.system,
                "examples": self.prompt.examples,
                "schema": ANSWER_SCHEMA,
                "extractive": asdict(self.extractive) if self.extractive else None,
                "response_format": self.response_format,
                "generation": self.generation,
            },
            sort_keys=True,
        )
        return hashlib.sha256(blob.encode()).hexdigest()

    def legacy_cache_key(self, headline: str) -> str:
        """The key answers were cached under before cache_key covered only the request body: those answers
        are paid for, so a run finds them by it and re-files them under cache_key."""
        schema = json.dumps(self.extractive.schema(headline)) if self.extractive else ""
        return hashlib.sha256(f"{self._legacy_fingerprint}\n{headline}\n{schema}".encode()).hexdigest()

    def body(self, headline: str) -> dict:
        body = {"model": self.model, "messages": self.prompt.messages(headline), **self.generation}
        if self.extractive:
            body["max_tokens"] = self.extractive.max_tokens(headline)
        response_format = RESPONSE_FORMATS[self.response_format](self.schema(headline))
        if response_format:
            body["response_format"] = response_format
        return body


class BadReply(ValueError):
    """A 200 whose body is no chat completion (not UTF-8 JSON, no choices[0] object): a proxy's error page or
    a cut transfer says nothing about the headline, so the client retries it like a 500."""


def reply_answer(body: bytes) -> dict:
    """The answer in a chat-completion body: content, finish_reason, usage (the cache normalises them).
    A completion whose message is not an object is the endpoint's answer to this headline all the same
    (it ran, and is paid): it is kept as an invalid answer with `error`, not asked again."""
    try:
        payload = orjson.loads(body)  # orjson rejects a body that is not UTF-8 too
    except orjson.JSONDecodeError as error:
        raise BadReply(f"body is not JSON: {error}") from error
    choices = payload.get("choices") if isinstance(payload, dict) else None
    if not (isinstance(choices, list) and choices and isinstance(choices[0], dict)):
        raise BadReply(f"no choices[0] object in {body[:100]!r}")
    message = choices[0].get("message")
    answer = {
        "content": message.get("content") if isinstance(message, dict) else None,
        "finish_reason": choices[0].get("finish_reason"),
        "usage": payload.get("usage"),
    }
    if isinstance(payload.get("model"), str) and payload["model"]:
        answer["served_model"] = payload["model"]  # the model the server says answered (TGI: its model id)
    if not isinstance(message, dict):
        answer["error"] = f"no_content: message is {orjson.dumps(message).decode()[:40]}, not an object"
    return answer


def parse_answer(content: str, reply_error: str | None = None) -> dict:
    """The teacher's answer as {valid, error, mentions, names}: two parallel lists, repeats dropped. An invalid
    answer (`reply_error`: the reply had no text) is kept with the reason, never dropped."""
    if reply_error:
        return {"valid": False, "error": reply_error, "mentions": [], "names": []}
    try:
        data = orjson.loads(content)
    except orjson.JSONDecodeError as error:
        return {"valid": False, "error": f"invalid_json: {error.msg}", "mentions": [], "names": []}
    try:
        companies = Companies.model_validate(data).companies
    except ValidationError:
        return {
            "valid": False,
            "error": 'schema: expected {"companies": [{"mention": ..., "name": ...}]}',
            "mentions": [],
            "names": [],
        }
    pairs = {c.mention: c.name for c in reversed(companies)}  # reversed: the first name given for a mention wins
    mentions = list(dict.fromkeys(c.mention for c in companies))
    return {"valid": True, "error": None, "mentions": mentions, "names": [pairs[m] for m in mentions]}
