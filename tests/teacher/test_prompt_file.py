"""A bad prompt file stops llm_label with one line naming the file (and line) and the problem, never a traceback."""

import pytest

from stages.core.errors import InputError
from stages.teacher.request import Prompt

GOOD_EXAMPLE = 'examples:\n  - {headline: "Visa Rallies", answer: {companies: [{mention: Visa, name: Visa}]}}\n'

BAD_PROMPTS = {
    "empty": (b"", r"p.yaml: bad prompt file: it is empty"),
    "only a comment": (b"# nothing yet\n", r"p.yaml: bad prompt file: it is empty"),
    "not UTF-8": (
        b"system: |\n  caf\xe9\n",
        r"p.yaml:2: bad prompt file: not UTF-8 \(invalid continuation byte at byte 15\)",
    ),
    "YAML syntax error": (
        b"system: fine\nexamples: [\n  {headline: a\n",
        r"p.yaml:4: bad prompt file: not YAML \(expected ',' or '}', but got '<stream end>'\)",
    ),
    "a list, not a mapping": (b"- system\n", r"p.yaml: bad prompt file: expected a mapping .* \(got list\)"),
    "system as a list": (
        b"system: [a, b]\n",
        r"p.yaml: bad prompt file: 'system' must be a non-empty string \(got list\)",
    ),
    "system as a number": (b"system: 5\n", r"'system' must be a non-empty string \(got int\)"),
    "system missing": (GOOD_EXAMPLE.encode(), r"'system' must be a non-empty string \(missing\)"),
    "system blank": (b"system: '  '\n", r"'system' must be a non-empty string \(got str\)"),
    "examples not a list": (
        b"system: s\nexamples: {headline: a}\n",
        r"p.yaml: bad prompt file: 'examples' must be a list of \{headline, answer\} \(got dict\)",
    ),
    "example not a mapping": (
        b"system: s\nexamples: [x]\n",
        r"examples\[0\] needs 'headline' \(a string\) and 'answer'",
    ),
    "headline not a string": (
        b"system: s\nexamples: [{headline: 5, answer: {companies: []}}]\n",
        r"examples\[0\] needs 'headline' \(a string\)",
    ),
    "answer of the wrong shape": (
        b"system: s\nexamples: [{headline: a, answer: {companies: [{mention: 5, name: a}]}}]\n",
        r"p.yaml: bad prompt file: examples\[0\]: answer companies.0.mention: Input should be a valid string",
    ),
    "answer missing": (b"system: s\nexamples: [{headline: a}]\n", r"examples\[0\]: answer answer: Input should be"),
}


@pytest.mark.parametrize("case", sorted(BAD_PROMPTS))
def test_a_bad_prompt_file_is_one_input_error_naming_the_file(case, tmp_path):
    content, message = BAD_PROMPTS[case]
    path = tmp_path / "p.yaml"
    path.write_bytes(content)
    with pytest.raises(InputError, match=message) as raised:
        Prompt.load(path)
    assert "\n" not in str(raised.value)


def test_a_missing_or_unreadable_prompt_file_is_one_input_error(tmp_path):
    with pytest.raises(InputError, match=r"nope.yaml: prompt file not found \(llm_label.prompt_file\)"):
        Prompt.load(tmp_path / "nope.yaml")
    (tmp_path / "dir.yaml").mkdir()
    with pytest.raises(InputError, match=r"dir.yaml: cannot read the prompt file \(Is a directory\)"):
        Prompt.load(tmp_path / "dir.yaml")


def test_a_good_prompt_file_still_loads(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("system: |\n  Find companies.\n" + GOOD_EXAMPLE)
    prompt = Prompt.load(path)
    assert prompt.system == "Find companies."
    assert prompt.examples == (("Visa Rallies", '{"companies": [{"mention": "Visa", "name": "Visa"}]}'),)
