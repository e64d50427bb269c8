"""POST /v1/messages with the official `anthropic` client against a real server and model.

The client is pointed at the server's URL and used unchanged; what it parses (Message, the
streamed events, its typed errors) is what Anthropic's own API would have to send.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import anthropic
import httpx2 as httpx
import pytest
from anthropic.types import Message, TextBlock, ToolUseBlock

from tests.conftest import MODEL, Server, start_server, stop_server

KEY = "rk-messages-0123456789"
GREEDY = {"temperature": 0, "seed": 42}  # the newest anthropic client sends these as extra fields
IMAGE = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}}


def client(server: Server, api_key: str = "unused") -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=server.url, api_key=api_key, max_retries=0, timeout=120)


def text_of(message: Message) -> str:
    return "".join(b.text for b in message.content if isinstance(b, TextBlock))


def test_plain_message(pulled: Server) -> None:
    r = client(pulled).messages.create(
        model=MODEL, max_tokens=32, extra_body=GREEDY,
        messages=[{"role": "user", "content": "What is the capital of France? One word."}])
    assert r.id.startswith("msg_") and r.type == "message" and r.role == "assistant"
    assert r.model == MODEL and "Paris" in text_of(r)
    assert r.stop_reason == "end_turn" and r.stop_sequence is None
    assert r.usage.input_tokens > 10 and 0 < r.usage.output_tokens <= 32


def test_system_prompt_as_string_and_as_blocks(pulled: Server) -> None:
    question = "What is my name? Answer with the name only."
    ask = [{"role": "user", "content": [{"type": "text", "text": question}]}]
    system = "The user's name is Zebulon."
    as_text = client(pulled).messages.create(model=MODEL, max_tokens=12, extra_body=GREEDY, system=system,
                                             messages=ask)
    as_blocks = client(pulled).messages.create(
        model=MODEL, max_tokens=12, extra_body=GREEDY, messages=ask,
        system=[{"type": "text", "text": system, "cache_control": {"type": "ephemeral"}}])
    assert "Zebulon" in text_of(as_text)
    assert text_of(as_blocks) == text_of(as_text)
    assert as_blocks.usage.input_tokens == as_text.usage.input_tokens


def test_streaming_with_the_stream_helper(pulled: Server) -> None:
    with client(pulled).messages.stream(
            model=MODEL, max_tokens=40, extra_body=GREEDY,
            messages=[{"role": "user", "content": "Count from 1 to 5, separated by commas."}]) as stream:
        pieces = list(stream.text_stream)
        final = stream.get_final_message()
    assert len(pieces) > 3 and "".join(pieces) == text_of(final)
    assert "1" in text_of(final) and final.stop_reason == "end_turn"
    assert final.usage.input_tokens > 0 and final.usage.output_tokens > 3


def test_streamed_events_come_in_anthropics_order(pulled: Server) -> None:
    body = {"model": MODEL, "max_tokens": 5, "temperature": 0, "stream": True,
            "messages": [{"role": "user", "content": "Say hello."}]}
    with pulled.client() as c, c.stream("POST", "/v1/messages", json=body) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        names = [line.removeprefix("event: ") for line in r.iter_lines() if line.startswith("event: ")]
    deltas = names[3:-3]
    assert names[:3] == ["message_start", "ping", "content_block_start"] and deltas
    assert set(deltas) == {"content_block_delta"}
    assert names[-3:] == ["content_block_stop", "message_delta", "message_stop"]


def test_stop_sequence_ends_the_answer(pulled: Server) -> None:
    ask = [{"role": "user", "content": "Count from 1 to 10, separated by commas."}]
    r = client(pulled).messages.create(model=MODEL, max_tokens=40, extra_body=GREEDY, messages=ask,
                                       stop_sequences=["5"])
    assert r.stop_reason == "stop_sequence" and r.stop_sequence == "5"
    assert "4" in text_of(r) and "5" not in text_of(r)
    with client(pulled).messages.stream(model=MODEL, max_tokens=40, extra_body=GREEDY, messages=ask,
                                        stop_sequences=["5"]) as stream:
        final = stream.get_final_message()
    assert final.stop_reason == "stop_sequence" and final.stop_sequence == "5"
    assert text_of(final) == text_of(r)


def test_max_tokens_is_the_limit(pulled: Server) -> None:
    r = client(pulled).messages.create(model=MODEL, max_tokens=3, extra_body=GREEDY,
                                       messages=[{"role": "user", "content": "Tell me a long story."}])
    assert r.stop_reason == "max_tokens" and r.usage.output_tokens == 3


def test_output_config_format_constrains_the_answer(pulled: Server) -> None:
    schema = {"type": "object", "properties": {"city": {"type": "string"}, "country": {"type": "string"}},
              "required": ["city", "country"]}
    r = client(pulled).messages.create(
        model=MODEL, max_tokens=40, extra_body=GREEDY,
        output_config={"format": {"type": "json_schema", "schema": schema}},
        messages=[{"role": "user", "content": "Name the capital of France and its country as JSON."}])
    answer = json.loads(text_of(r))
    assert set(answer) == {"city", "country"} and r.stop_reason == "end_turn"


def test_tool_choice_any_makes_the_model_call_a_tool(pulled: Server) -> None:
    weather = {"name": "get_weather", "description": "Get the current weather for a city",
               "input_schema": {"type": "object", "properties": {"city": {"type": "string"}},
                                "required": ["city"]}}
    r = client(pulled).messages.create(
        model=MODEL, max_tokens=40, extra_body=GREEDY, tools=[weather], tool_choice={"type": "any"},
        messages=[{"role": "user", "content": "What is the weather in Paris?"}])
    assert r.stop_reason == "tool_use"
    [use] = [b for b in r.content if isinstance(b, ToolUseBlock)]
    assert use.name == "get_weather" and set(use.input) == {"city"}


def test_count_tokens_matches_what_the_answer_reports(pulled: Server) -> None:
    """Claude Code asks count_tokens before long requests; Ollama answers it 404."""
    weather = {"name": "get_weather", "description": "Get the current weather for a city",
               "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}
    ask = [{"role": "user", "content": "What is the weather in Paris?"}]
    system = "Answer briefly."
    counted = client(pulled).messages.count_tokens(model=MODEL, system=system, messages=ask)
    answered = client(pulled).messages.create(model=MODEL, max_tokens=4, extra_body=GREEDY,
                                              system=system, messages=ask)
    assert counted.input_tokens == answered.usage.input_tokens > 10
    with_tools = client(pulled).messages.count_tokens(model=MODEL, system=system, messages=ask,
                                                      tools=[weather])
    assert with_tools.input_tokens > counted.input_tokens + 20  # the template lists the tool
    with pytest.raises(anthropic.NotFoundError):
        client(pulled).messages.count_tokens(model="no-such-model", messages=ask)
    with pytest.raises(anthropic.BadRequestError) as err:  # the same refusals as /v1/messages
        client(pulled).messages.count_tokens(model=MODEL, messages=ask,
                                             thinking={"type": "enabled", "budget_tokens": 1024})
    assert "does not support thinking" in err.value.body["error"]["message"]


def test_an_image_is_a_clear_400(pulled: Server) -> None:
    with pytest.raises(anthropic.BadRequestError) as err:
        client(pulled).messages.create(model=MODEL, max_tokens=8, messages=[{"role": "user", "content": [
            {"type": "text", "text": "What is in this picture?"}, IMAGE]}])
    assert err.value.status_code == 400
    assert err.value.body == {"type": "error", "error": {
        "type": "invalid_request_error",
        "message": "messages.0.content: image blocks are not supported (Roost serves no vision model)"}}


def test_unknown_model_is_404_not_found_error(pulled: Server) -> None:
    with pytest.raises(anthropic.NotFoundError) as err:
        client(pulled).messages.create(model="no-such-model", max_tokens=8,
                                       messages=[{"role": "user", "content": "hi"}])
    assert isinstance(err.value.body, dict) and err.value.body["type"] == "error"
    assert err.value.body["error"]["type"] == "not_found_error"
    assert "no-such-model" in err.value.body["error"]["message"]


@pytest.mark.parametrize(("body", "words"), [
    ({"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}, "max_tokens"),
    ({"model": MODEL, "max_tokens": 8, "messages": []}, "messages"),
    ({"model": MODEL, "max_tokens": 8, "messages": [{"role": "system", "content": "hi"}]}, "role"),
    ({"model": MODEL, "max_tokens": 8, "messages": [{"role": "user", "content": [
        {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}}]}]}, "tool_use block"),
    ({"model": MODEL, "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}],
      "tools": [{"type": "web_search_20250305", "name": "web_search"}]}, "web_search_20250305"),
    ({"model": MODEL, "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}],
      "tools": [{"name": "f", "input_schema": {"type": "object"}}],
      "tool_choice": {"type": "tool", "name": "g"}}, "'g'"),
])
def test_bad_requests_are_400_in_anthropics_shape(pulled: Server, body: dict[str, object],
                                                   words: str) -> None:
    with pulled.client() as c:
        r = c.post("/v1/messages", json=body)
    assert r.status_code == 400, r.text
    error = r.json()
    assert error["type"] == "error" and error["error"]["type"] == "invalid_request_error"
    assert words in error["error"]["message"]


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = start_server(Path(tmp_path_factory.mktemp("keyed-messages")), {"ROOST_API_KEY": KEY})
    try:
        yield srv
    finally:
        stop_server(srv)


def test_the_api_key_is_accepted_in_x_api_key(keyed: Server) -> None:
    ask = {"model": "absent-model", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}
    with pytest.raises(anthropic.AuthenticationError) as err:
        client(keyed, api_key="wrong").messages.create(**ask)
    assert isinstance(err.value.body, dict)
    assert err.value.body["error"]["type"] == "authentication_error"
    # past the key check, the request reaches the route: the model is not there
    with pytest.raises(anthropic.NotFoundError):
        client(keyed, api_key=KEY).messages.create(**ask)
    with httpx.Client(base_url=keyed.url) as c:
        assert c.get("/api/tags", headers={"x-api-key": KEY}).status_code == 200
        assert c.get("/api/tags", headers={"x-api-key": "wrong"}).status_code == 401
        assert c.get("/api/tags", headers={"authorization": f"Bearer {KEY}"}).status_code == 200
