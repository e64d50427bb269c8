"""Tool use and thinking over /v1/messages, with the official `anthropic` client.

The bundled 0.5B model calls tools unreliably and does not think, so the server runs the
scripted fake runner (tests/support/fake_runner.py): the model's words are fixed text, and
everything else (the route, the chat template, the output parser, the client) is real.
"""

from __future__ import annotations

import anthropic
import pytest
from anthropic.types import TextBlock, ThinkingBlock, ToolUseBlock

from tests.support import THINKING_MODEL, TOOLS_MODEL, FakeServer, tool_call, tool_results

WEATHER = {"name": "get_weather", "description": "Get the current weather for a city",
           "input_schema": {"type": "object", "properties": {"city": {"type": "string"}},
                            "required": ["city"]}}
ASK = {"role": "user", "content": "What is the weather in Paris?"}
THOUGHT = ["<think>", "Let me think", " about it.", "</think>", "\n\n", "The answer is 4."]


def client(fake: FakeServer) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=fake.server.url, api_key="unused", max_retries=0, timeout=60)


def test_a_tool_round_trip(fake: FakeServer) -> None:
    log = fake.script(rules=[("18 degrees", ["It is 18 degrees and sunny in Paris."]),
                             ("Paris", ["Let me look.", tool_call("get_weather", city="Paris")])])
    r = client(fake).messages.create(model=TOOLS_MODEL, max_tokens=64, tools=[WEATHER],
                                     messages=[ASK])
    assert r.stop_reason == "tool_use"
    text, use = r.content
    assert isinstance(text, TextBlock) and text.text == "Let me look."
    assert isinstance(use, ToolUseBlock) and use.id.startswith("toolu_")
    assert (use.name, use.input) == ("get_weather", {"city": "Paris"})
    assert "get_weather" in fake.prompts(log)[0]  # the template offered the tool
    # the result goes back as a tool_result block, and the model answers in words
    answer = client(fake).messages.create(
        model=TOOLS_MODEL, max_tokens=64, tools=[WEATHER],
        messages=[ASK, {"role": "assistant", "content": r.content},
                  {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id,
                                                "content": [{"type": "text", "text": "18 degrees"}]}]}])
    assert answer.stop_reason == "end_turn"
    words = [b.text for b in answer.content if isinstance(b, TextBlock)]
    assert words == ["It is 18 degrees and sunny in Paris."]
    last = fake.prompts(log)[-1]
    assert tool_results(last) == ["18 degrees"]
    assert '"name": "get_weather"' in last.split("<tool_response>")[0]  # the call, in the history


def test_a_streamed_tool_call_arrives_as_input_json(fake: FakeServer) -> None:
    fake.script(rules=[("Paris", [tool_call("get_weather", city="Paris")])])
    with client(fake).messages.stream(model=TOOLS_MODEL, max_tokens=64, tools=[WEATHER],
                                      messages=[ASK]) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_message()
    assert "input_json" in kinds and final.stop_reason == "tool_use"
    [use] = final.content
    assert isinstance(use, ToolUseBlock) and use.input == {"city": "Paris"}


def test_an_error_tool_result_tells_the_model(fake: FakeServer) -> None:
    log = fake.script(answers=[["Sorry, no weather today."]])
    client(fake).messages.create(model=TOOLS_MODEL, max_tokens=64, tools=[WEATHER], messages=[
        ASK, {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "get_weather",
                                                 "input": {"city": "Paris"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1",
                                      "content": "service down", "is_error": True}]}])
    assert tool_results(fake.prompts(log)[-1]) == ["Error: service down"]


def test_thinking_comes_as_a_thinking_block(fake: FakeServer) -> None:
    fake.script(rules=[("2+2", THOUGHT)])
    ask = [{"role": "user", "content": "What is 2+2?"}]
    r = client(fake).messages.create(model=THINKING_MODEL, max_tokens=64, messages=ask,
                                     thinking={"type": "enabled", "budget_tokens": 1024})
    thought, text = r.content
    assert isinstance(thought, ThinkingBlock) and thought.thinking == "Let me think about it."
    assert isinstance(text, TextBlock) and text.text == "The answer is 4."
    with client(fake).messages.stream(model=THINKING_MODEL, max_tokens=64, messages=ask,
                                      thinking={"type": "enabled", "budget_tokens": 1024}) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_message()
    assert "thinking" in kinds
    assert [(b.type, getattr(b, "thinking", None) or getattr(b, "text", None)) for b in final.content] == [
        ("thinking", "Let me think about it."), ("text", "The answer is 4.")]


def test_thinking_on_a_model_without_it_is_400(fake: FakeServer) -> None:
    with pytest.raises(anthropic.BadRequestError) as err:
        client(fake).messages.create(model=TOOLS_MODEL, max_tokens=8, messages=[ASK],
                                     thinking={"type": "enabled", "budget_tokens": 1024})
    assert "thinking" in str(err.value)
