"""The output parser on recorded model outputs (a 0.5B model cannot show these reliably).

The strings below are outputs in the formats Qwen2.5 (tool calls) and Qwen3/DeepSeek-R1
(thinking) produce; each is fed in every possible split into pieces, as a stream would.
"""

from __future__ import annotations

import pytest

from roost.chat.parse import OutputParser, Parsed

TOOL_OUTPUT = ('<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris", "unit": "C"}}\n'
               '</tool_call>\n<tool_call>\n{"name": "get_time", "arguments": {"tz": "CET"}}\n</tool_call>')
THINK_OUTPUT = "<think>\nThe user greets me. I should greet back.\n</think>\n\nHello! How can I help?"
MIXED = ("Let me check.<tool_call>{\"name\": \"lookup\", \"arguments\": \"{\\\"q\\\": \\\"x\\\"}\"}"
         "</tool_call>")


def run(parser: OutputParser, pieces: list[str]) -> Parsed:
    whole = Parsed()
    for part in [*(parser.feed(p) for p in pieces), parser.finish()]:
        whole.content += part.content
        whole.thinking += part.thinking
        whole.tool_calls += part.tool_calls
    return whole


def splits(text: str) -> list[list[str]]:
    return [[text[:i], text[i:j], text[j:]] for i in range(0, len(text), 7)
            for j in range(i, len(text), 11)]


@pytest.mark.parametrize("pieces", splits(TOOL_OUTPUT))
def test_tool_calls_in_any_split(pieces: list[str]) -> None:
    out = run(OutputParser(tools=True, think=False), pieces)
    assert out.content.strip() == ""
    assert out.tool_calls == [
        {"function": {"index": 0, "name": "get_weather", "arguments": {"city": "Paris", "unit": "C"}}},
        {"function": {"index": 1, "name": "get_time", "arguments": {"tz": "CET"}}},
    ]


@pytest.mark.parametrize("pieces", splits(THINK_OUTPUT))
def test_thinking_in_any_split(pieces: list[str]) -> None:
    out = run(OutputParser(tools=False, think=True), pieces)
    assert out.thinking.strip() == "The user greets me. I should greet back."
    assert out.content == "Hello! How can I help?"


def test_text_before_a_call_and_string_arguments() -> None:
    out = run(OutputParser(tools=True, think=False), list(MIXED))
    assert out.content == "Let me check."
    assert out.tool_calls[0]["function"]["arguments"] == {"q": "x"}


def test_tags_are_plain_text_when_not_enabled_or_not_json() -> None:
    assert run(OutputParser(tools=False, think=False), [TOOL_OUTPUT]).content == TOOL_OUTPUT
    bad = "<tool_call>not json</tool_call> ok"
    assert run(OutputParser(tools=True, think=False), [bad]).content == bad


def test_prompt_that_opens_thinking_and_unfinished_blocks() -> None:
    out = run(OutputParser(tools=False, think=True, starts_thinking=True),
              ["hmm, 2+2", " is 4</think>The answer is 4."])
    assert out.thinking == "hmm, 2+2 is 4" and out.content == "The answer is 4."
    cut = run(OutputParser(tools=True, think=False), ['<tool_call>{"name": "f"'])
    assert cut.content == '<tool_call>{"name": "f"' and not cut.tool_calls


def test_a_lone_angle_bracket_is_not_held_forever() -> None:
    parser = OutputParser(tools=True, think=True)
    assert parser.feed("a < b").content == "a < b"
    assert parser.feed(" and <").content == " and "
    assert parser.feed("x").content == "<x"


NAMES = frozenset({"get_weather"})


@pytest.mark.parametrize("output", [
    '{"name": "get_weather", "arguments": {"city": "Paris"}}',
    '```json\n{\n  "name": "get_weather",\n  "arguments": {\n    "city": "Paris"\n  }\n}\n```',
    '[{"name": "get_weather", "arguments": {"city": "Paris"}}]',
])
def test_bare_json_calls_to_offered_tools(output: str) -> None:
    """qwen2.5-coder:0.5b's real answers to a tool request (recorded from this model)."""
    out = run(OutputParser(tools=True, think=False, tool_names=NAMES), list(output))
    assert out.tool_calls == [{"function": {"index": 0, "name": "get_weather",
                                            "arguments": {"city": "Paris"}}}]
    assert out.content == ""


def test_bare_json_that_is_not_a_call_stays_content() -> None:
    text = '{"name": "other_tool", "arguments": {}}'
    out = run(OutputParser(tools=True, think=False, tool_names=NAMES), list(text))
    assert out.content == text and not out.tool_calls
    prose = run(OutputParser(tools=True, think=False, tool_names=NAMES), ["It is ", "sunny."])
    assert prose.content == "It is sunny."


def test_json_naming_another_tool_streams_at_once() -> None:
    from roost.chat.parse import OutputParser

    p = OutputParser(tools=True, think=False, tool_names=frozenset({"list_dir"}))
    assert p.feed("```json\n{").content == ""  # could still be a call
    assert p.feed('\n  "name": "cat"').content == '```json\n{\n  "name": "cat"'
    assert p.feed(', "arguments": {}}').content == ', "arguments": {}}'


def test_a_long_held_answer_streams_as_text() -> None:
    from roost.chat.parse import MAX_HELD, OutputParser

    p = OutputParser(tools=True, think=False, tool_names=frozenset({"list_dir"}))
    assert p.feed("[" + "1, " * 10).content == ""
    assert p.feed("2, " * MAX_HELD).content.startswith("[1, ")


def test_a_bare_call_of_an_offered_tool_is_still_a_call() -> None:
    from roost.chat.parse import OutputParser

    p = OutputParser(tools=True, think=False, tool_names=frozenset({"list_dir"}))
    assert not p.feed('{"name": "list_dir", ').content
    assert not p.feed('"arguments": {"path": "/tmp"}}').content
    assert p.finish().tool_calls[0]["function"]["name"] == "list_dir"
