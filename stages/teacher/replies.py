"""How we read the teacher's reply: the answer schema it must follow, the chat completion's content, and the
answer parsed into mentions and names."""

from __future__ import annotations

from dataclasses import dataclass

import orjson
from pydantic import BaseModel, ValidationError

from stages.http.client import BadReply


class Company(BaseModel):
    mention: str  # as written in the headline
    name: str  # its normalised (official) name


class Companies(BaseModel):
    """What the teacher must answer: one {mention, name} pair per company, so the two cannot differ in number."""

    companies: list[Company]


ANSWER_SCHEMA = Companies.model_json_schema()


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


@dataclass(frozen=True)
class ParsedAnswer:
    """The teacher's answer to one headline: two parallel lists (a mention as written, its normalised name),
    repeats dropped; an invalid answer keeps the reason and no pairs."""

    valid: bool
    error: str | None
    mentions: list[str]
    names: list[str]

    @classmethod
    def invalid(cls, error: str) -> ParsedAnswer:
        return cls(False, error, [], [])


def parse_answer(content: str, reply_error: str | None = None) -> ParsedAnswer:
    """The teacher's answer parsed. An invalid answer (`reply_error`: the reply had no text) is kept with the
    reason, never dropped."""
    if reply_error:
        return ParsedAnswer.invalid(reply_error)
    try:
        data = orjson.loads(content)
    except orjson.JSONDecodeError as error:
        return ParsedAnswer.invalid(f"invalid_json: {error.msg}")
    try:
        companies = Companies.model_validate(data).companies
    except ValidationError:
        return ParsedAnswer.invalid('schema: expected {"companies": [{"mention": ..., "name": ...}]}')
    pairs = {c.mention: c.name for c in reversed(companies)}  # reversed: the first name given for a mention wins
    mentions = list(dict.fromkeys(c.mention for c in companies))
    return ParsedAnswer(True, None, mentions, [pairs[m] for m in mentions])
