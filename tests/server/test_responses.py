"""OpenAI's Responses API (`/v1/responses`) through the official `openai` client, unchanged.

Text, instructions, streaming, JSON schemas and errors run on the real model. Tool calls and
reasoning summaries run on the scripted fake runner (tests/support/fake_runner.py), since the
0.5B model calls tools unreliably and does not think; there the server, the templates and the
output parsing are still the real code, and the prompt log shows what the model was given.
"""

from __future__ import annotations

import json
from typing import Any

import openai
import pytest
from pydantic import BaseModel

from tests.conftest import MODEL, Server
from tests.support import (
    THINKING_MODEL,
    TOOLS_MODEL,
    FakeServer,
    tool_call,
    tool_results,
)

WEATHER = {"type": "function", "name": "get_weather",
           "description": "Get the current weather for a city",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                          "required": ["city"]}}
GREEDY: dict[str, Any] = {"temperature": 0, "extra_body": {"seed": 42}}
PIRATE = ("You are a pirate captain sailing the seven seas. Answer every question the way an old "
          "pirate would, with plenty of pirate words and a parrot on your shoulder.")
THOUGHT = ["<think>", "Let me think", " about it.", "</think>", "\n\n", "The answer is 4."]


def client(server: Server) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)


# -- the real model ---------------------------------------------------------------------------

def test_plain_text_and_instructions(pulled: Server) -> None:
    r = client(pulled).responses.create(model=MODEL, input="Say hello.", max_output_tokens=30,
                                        **GREEDY)
    assert r.id.startswith("resp_") and r.object == "response" and r.model == MODEL
    assert r.status == "completed" and r.output_text.strip()
    [message] = r.output
    assert message.type == "message" and message.role == "assistant"
    assert message.content[0].type == "output_text" and message.content[0].annotations == []
    usage = r.usage
    assert usage is not None and usage.input_tokens > 0 and usage.output_tokens > 0
    assert usage.total_tokens == usage.input_tokens + usage.output_tokens
    assert usage.input_tokens_details.cached_tokens >= 0
    assert usage.output_tokens_details.reasoning_tokens == 0

    told = client(pulled).responses.create(
        model=MODEL, instructions=PIRATE,
        input="Say hello.", max_output_tokens=30, **GREEDY)
    assert told.instructions.startswith("You are a pirate") and told.output_text.strip()
    # the instructions replace the template's default system prompt, which is shorter
    assert told.usage is not None and told.usage.input_tokens > usage.input_tokens


def test_streaming_events_build_the_response(pulled: Server) -> None:
    with client(pulled).responses.stream(model=MODEL, input="Say hello.",
                                         max_output_tokens=30, **GREEDY) as stream:
        events = list(stream)
        final = stream.get_final_response()
    kinds = [e.type for e in events]
    assert kinds[:4] == ["response.created", "response.in_progress",
                         "response.output_item.added", "response.content_part.added"]
    assert kinds[-4:] == ["response.output_text.done", "response.content_part.done",
                          "response.output_item.done", "response.completed"]
    assert set(kinds[4:-4]) == {"response.output_text.delta"} and len(kinds) > 10
    assert [e.sequence_number for e in events] == list(range(len(events)))
    deltas = [e for e in events if e.type == "response.output_text.delta"]
    text = "".join(e.delta for e in deltas)
    assert text.strip() and text == final.output_text
    assert {e.item_id for e in deltas} == {final.output[0].id}
    assert final.status == "completed" and final.usage is not None
    assert final.usage.output_tokens > 0


class Capital(BaseModel):
    country: str
    capital: str


def test_json_schema_output_parses(pulled: Server) -> None:
    r = client(pulled).responses.parse(
        model=MODEL, input="What is the capital of France? Answer in JSON.",
        text_format=Capital, max_output_tokens=60, **GREEDY)
    assert isinstance(r.output_parsed, Capital)
    assert r.output_parsed.capital == "Paris"
    assert json.loads(r.output_text) == r.output_parsed.model_dump()
    assert r.text is not None and r.text.format.type == "json_schema"


def test_max_output_tokens_makes_an_incomplete_response(pulled: Server) -> None:
    r = client(pulled).responses.create(model=MODEL, input="Write a long story about a fox.",
                                        max_output_tokens=3, **GREEDY)
    assert r.status == "incomplete" and r.incomplete_details is not None
    assert r.incomplete_details.reason == "max_output_tokens"
    assert r.usage is not None and r.usage.output_tokens == 3


@pytest.mark.parametrize(("extra", "words"), [
    ({"previous_response_id": "resp_123"}, "stateless"),
    ({"conversation": "conv_1"}, "stateless"),
    ({"input": [{"type": "item_reference", "id": "msg_1"}]}, "stateless"),
    ({"tools": [{"type": "web_search"}]}, "web_search"),
    ({"input": [{"role": "user", "content": [
        {"type": "input_image", "image_url": "data:image/png;base64,AAAA"}]}]}, "images"),
    ({"input": [{"type": "function_call", "call_id": "c", "name": "f", "arguments": "{"}]},
     "not valid JSON"),
    ({"input": []}, "empty"),
    ({"text": {"format": {"type": "json_schema", "name": "x"}}}, "schema"),
    ({"reasoning": {"effort": "extreme"}}, "reasoning.effort"),
    ({"reasoning": {"effort": "low"}}, "does not support thinking"),
])
def test_what_cannot_be_served_is_a_400(pulled: Server, extra: dict[str, Any], words: str) -> None:
    body = {"model": MODEL, "input": "hi", **extra}
    with pytest.raises(openai.BadRequestError) as err:
        client(pulled).post("/responses", cast_to=object, body=body)
    assert err.value.status_code == 400 and words in err.value.message
    assert err.value.type == "invalid_request_error"


def test_unknown_model_is_a_404(pulled: Server) -> None:
    with pytest.raises(openai.NotFoundError):
        client(pulled).responses.create(model="no-such-model", input="hi")


# -- the scripted fake: tool calls and reasoning ----------------------------------------------

def test_tool_call_round_trip(fake: FakeServer) -> None:
    log = fake.script(rules=[("18 degrees", ["It is 18 degrees and sunny in Paris."]),
                             ("Paris", [tool_call("get_weather", city="Paris")])])
    c = client(fake.server)
    question = [{"role": "user", "content": "What is the weather in Paris?"}]
    r = c.responses.create(model=TOOLS_MODEL, input=question, tools=[WEATHER])
    [call] = r.output
    assert call.type == "function_call" and call.name == "get_weather"
    assert json.loads(call.arguments) == {"city": "Paris"}
    assert call.call_id.startswith("call_") and call.id and r.output_text == ""
    assert "get_weather" in fake.prompts(log)[-1]  # the template offered the tool

    answer = {"type": "function_call_output", "call_id": call.call_id,
              "output": "18 degrees and sunny"}
    final = c.responses.create(model=TOOLS_MODEL, input=[*question, *r.output, answer],
                               tools=[WEATHER])
    assert final.output_text == "It is 18 degrees and sunny in Paris."
    prompt = fake.prompts(log)[-1]
    assert tool_results(prompt) == ["18 degrees and sunny"]
    assert '"name": "get_weather"' in prompt.split("<tool_response>")[0].split("Paris?")[-1]


def test_streamed_tool_call(fake: FakeServer) -> None:
    fake.script(rules=[("Paris", [tool_call("get_weather", city="Paris")])])
    with client(fake.server).responses.stream(model=TOOLS_MODEL, input="Weather in Paris?",
                                              tools=[WEATHER]) as stream:
        events = list(stream)
        final = stream.get_final_response()
    kinds = [e.type for e in events]
    assert kinds == ["response.created", "response.in_progress", "response.output_item.added",
                     "response.function_call_arguments.delta",
                     "response.function_call_arguments.done", "response.output_item.done",
                     "response.completed"]
    [call] = final.output
    assert call.type == "function_call" and json.loads(call.arguments) == {"city": "Paris"}
    assert events[3].delta == call.arguments and events[2].item.id == call.id


def test_reasoning_summary(fake: FakeServer) -> None:
    log = fake.script(rules=[("2+2", THOUGHT)])
    c = client(fake.server)
    r = c.responses.create(model=THINKING_MODEL, input="What is 2+2?",
                           reasoning={"effort": "low", "summary": "auto"})
    reasoning, message = r.output
    assert reasoning.type == "reasoning"
    assert [s.text for s in reasoning.summary] == ["Let me think about it."]
    assert message.type == "message" and r.output_text == "The answer is 4."
    assert r.reasoning is not None and r.reasoning.effort == "low"
    assert "Reasoning: low" in fake.prompts(log)[-1]

    with c.responses.stream(model=THINKING_MODEL, input="What is 2+2?",
                            reasoning={"effort": "high"}) as stream:
        events = list(stream)
        final = stream.get_final_response()
    thought = "".join(e.delta for e in events if e.type == "response.reasoning_summary_text.delta")
    assert thought == "Let me think about it."
    assert [o.type for o in final.output] == ["reasoning", "message"]
    assert final.output[0].summary[0].text == thought and final.output_text == "The answer is 4."
    assert "Reasoning: high" in fake.prompts(log)[-1]


def test_effort_none_turns_thinking_off(fake: FakeServer) -> None:
    log = fake.script(answers=[["Four."]])
    r = client(fake.server).responses.create(model=THINKING_MODEL, input="What is 2+2?",
                                             reasoning={"effort": "none"})
    assert [o.type for o in r.output] == ["message"] and r.output_text == "Four."
    assert fake.prompts(log)[-1].endswith("<think>\n\n</think>\n\n")


def test_instructions_and_the_raw_event_stream(fake: FakeServer) -> None:
    """On the wire: each event's `event:` line names its `type`, numbered from 0."""
    log = fake.script(answers=[["Hel", "lo"]])
    body = {"model": TOOLS_MODEL, "instructions": "Be brief.", "stream": True,
            "input": [{"type": "message", "role": "user",
                       "content": [{"type": "input_text", "text": "Greet me."}]}]}
    with fake.server.client() as http, http.stream("POST", "/v1/responses", json=body) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        blocks = r.read().decode().strip().split("\n\n")
    events = []
    for block in blocks:
        name, data = block.split("\n")
        assert name.startswith("event: ") and data.startswith("data: ")
        events.append((name.removeprefix("event: "), json.loads(data.removeprefix("data: "))))
    assert all(name == data["type"] for name, data in events)
    assert [data["sequence_number"] for _, data in events] == list(range(len(events)))
    deltas = [d["delta"] for n, d in events if n == "response.output_text.delta"]
    assert deltas == ["Hel", "lo"]
    assert events[-1][1]["response"]["output"][0]["content"][0]["text"] == "Hello"
    prompt = fake.prompts(log)[-1]
    assert prompt.index("Be brief.") < prompt.index("Greet me.")
