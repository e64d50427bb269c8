"""Tool calls end to end where the real model shows them; thinking refused where it cannot."""

from __future__ import annotations

import ollama
import pytest

from tests.conftest import MODEL, Server, greedy

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Get the current weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                   "required": ["city"]}}}


def test_tool_call_with_the_official_client(pulled: Server) -> None:
    client = ollama.Client(host=pulled.url)
    messages = [{"role": "user", "content": "What is the weather in Paris?"}]
    r = client.chat(model=MODEL, messages=messages, tools=[WEATHER], options=greedy(60))
    calls = r.message.tool_calls or []
    assert [c.function.name for c in calls] == ["get_weather"]
    assert calls[0].function.arguments == {"city": "Paris"}
    streamed = list(client.chat(model=MODEL, messages=messages, tools=[WEATHER],
                                options=greedy(60), stream=True))
    streamed_calls = [c for p in streamed for c in (p.message.tool_calls or [])]
    assert [c.function.name for c in streamed_calls] == ["get_weather"]
    # the tool's answer goes back in, and the model answers in words
    messages += [r.message.model_dump(exclude_none=True),
                 {"role": "tool", "content": "18 degrees and sunny", "tool_name": "get_weather"}]
    final = client.chat(model=MODEL, messages=messages, tools=[WEATHER], options=greedy(40))
    assert final.message.content and not final.message.tool_calls


def test_think_on_a_model_without_thinking_is_400(pulled: Server) -> None:
    client = ollama.Client(host=pulled.url)
    with pytest.raises(ollama.ResponseError) as err:
        client.chat(model=MODEL, messages=[{"role": "user", "content": "hi"}], think=True)
    assert err.value.status_code == 400 and "thinking" in str(err.value)
    # think=False is always allowed
    r = client.chat(model=MODEL, messages=[{"role": "user", "content": "hi"}], think=False,
                    options=greedy(4))
    assert r.message.content
