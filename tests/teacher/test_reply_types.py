"""The teacher's answer is typed exactly: a number, bool or null where a string belongs makes the answer invalid
(kept with its reason, never coerced into a mention)."""

import orjson
import pytest

from stages.teacher.replies import parse_answer

WRONG_TYPES = {
    "mention a number": {"mention": 5, "name": "Visa"},
    "mention a float": {"mention": 1.5, "name": "Visa"},
    "mention a bool": {"mention": True, "name": "Visa"},
    "name a bool": {"mention": "Visa", "name": False},
    "name null": {"mention": "Visa", "name": None},
    "mention an object": {"mention": {"text": "Visa"}, "name": "Visa"},
    "mention a list": {"mention": ["Visa"], "name": "Visa"},
}


@pytest.mark.parametrize("case", sorted(WRONG_TYPES))
def test_a_mention_or_name_of_another_type_is_an_invalid_answer(case):
    parsed = parse_answer(orjson.dumps({"companies": [WRONG_TYPES[case]]}).decode())
    assert not parsed.valid and parsed.error is not None and parsed.error.startswith("schema:")
    assert parsed.mentions == [] and parsed.names == []


@pytest.mark.parametrize("companies", [{"mention": "Visa", "name": "Visa"}, "Visa", 1, True, None, [["Visa", "Visa"]]])
def test_companies_must_be_a_list_of_objects(companies):
    assert not parse_answer(orjson.dumps({"companies": companies}).decode()).valid


def test_a_well_typed_answer_is_valid():
    parsed = parse_answer('{"companies": [{"mention": "5", "name": "Five Corp"}]}')
    assert parsed.valid and parsed.mentions == ["5"] and parsed.names == ["Five Corp"]
