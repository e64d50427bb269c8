"""OpenAI's dialect (/v1) on a real server with the real model, driven by the real `openai` SDK."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
import time
from collections.abc import Iterator

import httpx2 as httpx
import openai
import pytest
from openai.types import CompletionUsage
from openai.types.chat import ChatCompletionMessageParam

from tests.conftest import MODEL, Server, start_server, stop_server
from tests.scheduler.test_runner_lifecycle import runner_pids

PERSON: dict[str, object] = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
    "required": ["name", "age"],
}
GREEDY = {"temperature": 0, "seed": 42}  # for raw JSON bodies; SDK calls spell it out


@pytest.fixture
def client(pulled: Server) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=pulled.url + "/v1", api_key="unused", max_retries=0,
                       timeout=120) as c:
        yield c


def assert_usage(usage: CompletionUsage | None) -> None:
    assert usage is not None
    assert usage.prompt_tokens > 0 and usage.completion_tokens > 0
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


def assert_openai_error(r: httpx.Response, status: int, kind: str) -> dict:
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert isinstance(err["message"], str) and err["message"]
    assert err["type"] == kind and err["param"] is None and err["code"] is None
    return err


def test_chat_non_stream(client: openai.OpenAI) -> None:
    r = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Say hello."}], max_tokens=12,
        temperature=0, seed=42)
    assert r.id.startswith("chatcmpl-") and r.object == "chat.completion"
    assert r.model == MODEL and r.system_fingerprint == "fp_roost" and r.created > 0
    assert len(r.choices) == 1
    choice = r.choices[0]
    assert choice.index == 0 and choice.finish_reason in ("stop", "length")
    assert choice.message.role == "assistant" and choice.message.content
    assert choice.logprobs is None
    assert_usage(r.usage)
    assert r.usage is not None and r.usage.completion_tokens <= 12


def test_chat_streamed_with_usage_matches_non_stream(client: openai.OpenAI) -> None:
    messages: list[ChatCompletionMessageParam] = [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": [{"type": "text", "text": "Count from 1 to 5."}]},
    ]
    whole = client.chat.completions.create(model=MODEL, messages=messages,
                                           max_completion_tokens=16, temperature=0, seed=42)
    chunks = list(client.chat.completions.create(
        model=MODEL, messages=messages, max_completion_tokens=16, temperature=0, seed=42,
        stream=True, stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[0].choices[0].delta.content == ""
    assert len({c.id for c in chunks}) == 1 and len({c.created for c in chunks}) == 1
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    *content, finish, usage = chunks
    assert all(c.choices[0].finish_reason is None and c.usage is None for c in content)
    assert finish.choices[0].finish_reason == whole.choices[0].finish_reason
    assert finish.choices[0].delta.content is None
    assert usage.choices == []
    assert_usage(usage.usage)
    assert usage.usage is not None and whole.usage is not None
    assert usage.usage.completion_tokens == whole.usage.completion_tokens
    streamed = "".join(c.choices[0].delta.content or "" for c in content)
    assert streamed == whole.choices[0].message.content and streamed.strip()


def test_stream_without_usage_has_no_usage_chunk(client: openai.OpenAI) -> None:
    chunks = list(client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Hi"}], max_tokens=4, stream=True,
        temperature=0, seed=42))
    assert chunks[-1].choices and chunks[-1].choices[0].finish_reason == "length"
    assert all(c.usage is None for c in chunks)


def test_sse_wire_format(pulled: Server) -> None:
    body = {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 3,
            "stream": True, "stream_options": {"include_usage": True}, **GREEDY}
    with pulled.client() as c, c.stream("POST", "/v1/chat/completions", json=body) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        raw = r.read().decode()
    events = raw.split("\n\n")
    assert events[-1] == "" and events[-2] == "data: [DONE]"
    assert all(e.startswith("data: {") for e in events[:-2])
    assert json.loads(events[-3][6:])["usage"]["completion_tokens"] == 3


def test_completions(client: openai.OpenAI) -> None:
    r = client.completions.create(model=MODEL, prompt="def fibonacci(n):", max_tokens=8,
                                  temperature=0, seed=42)
    assert r.id.startswith("cmpl-") and r.object == "text_completion" and r.model == MODEL
    assert r.choices[0].text and r.choices[0].index == 0
    assert r.choices[0].finish_reason == "length" and r.choices[0].logprobs is None
    assert_usage(r.usage)
    # A raw prompt: no chat template around these few tokens.
    assert r.usage is not None and r.usage.prompt_tokens <= 6
    chunks = list(client.completions.create(model=MODEL, prompt=["def fibonacci(n):"], max_tokens=8,
                                            stream=True, stream_options={"include_usage": True},
                                            temperature=0, seed=42))
    *pieces, finish, usage = chunks
    assert "".join(c.choices[0].text for c in pieces) == r.choices[0].text
    assert finish.choices[0].finish_reason == "length" and finish.choices[0].text == ""
    assert usage.choices == [] and usage.usage is not None and usage.usage.completion_tokens == 8


def test_completions_prompt_list_of_two_is_400(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as e:
        client.completions.create(model=MODEL, prompt=["a", "b"], max_tokens=4)
    assert "single" in e.value.message


def test_models_list_and_retrieve(client: openai.OpenAI) -> None:
    models = list(client.models.list())
    entry = next(m for m in models if m.id == MODEL)
    assert entry.object == "model" and entry.owned_by == "library" and entry.created > 1_600_000_000
    one = client.models.retrieve(MODEL)
    assert one.id == MODEL and one.created == entry.created and one.owned_by == "library"
    with pytest.raises(openai.NotFoundError) as e:
        client.models.retrieve("nope:1b")
    assert "model 'nope:1b' not found" in e.value.message
    assert e.value.type == "not_found_error"


def test_response_format_json_schema(client: openai.OpenAI) -> None:
    r = client.chat.completions.create(
        model=MODEL, max_tokens=30, temperature=0, seed=42,
        messages=[{"role": "user", "content": "Invent a person. Reply with JSON."}],
        response_format={"type": "json_schema",
                         "json_schema": {"name": "person", "schema": PERSON}})
    person = json.loads(r.choices[0].message.content or "")
    assert set(person) == {"name", "age"}
    assert isinstance(person["name"], str) and isinstance(person["age"], int)


def test_response_format_json_object(client: openai.OpenAI) -> None:
    r = client.chat.completions.create(
        model=MODEL, max_tokens=30, temperature=0, seed=42, response_format={"type": "json_object"},
        messages=[{"role": "user", "content": "Give a JSON object with one key."}])
    if r.choices[0].finish_reason == "stop":
        assert isinstance(json.loads(r.choices[0].message.content or ""), dict)
    else:  # cut off by max_tokens: still the start of a JSON object
        assert (r.choices[0].message.content or "").lstrip().startswith("{")


def test_extra_body_ollama_options(client: openai.OpenAI) -> None:
    r = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Hi"}], max_tokens=4, temperature=0, seed=42,
        extra_body={"num_ctx": 1024, "top_k": 20, "min_p": 0.05, "unknown_field": 1})
    assert r.choices[0].message.content
    # An option is type-checked like on /api/*.
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Hi"}],
                                       max_tokens=4, extra_body={"top_k": "many"})
    assert "top_k" in e.value.message


def test_penalties(client: openai.OpenAI) -> None:
    r = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Hi"}], max_tokens=4, temperature=0, seed=42,
        frequency_penalty=0.5, presence_penalty=0.5, extra_body={"repeat_penalty": 1.1})
    assert r.choices[0].message.content


def test_stop_sequences(client: openai.OpenAI) -> None:
    r = client.completions.create(model=MODEL, prompt="1, 2, 3, 4, 5,", max_tokens=20,
                                  stop=["8"], temperature=0, seed=42)
    assert r.choices[0].finish_reason == "stop" and "8" not in r.choices[0].text


def test_unknown_model_is_not_found(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as e:
        client.chat.completions.create(model="nope:1b", messages=[{"role": "user", "content": "x"}])
    assert "model 'nope:1b' not found" in e.value.message
    with pytest.raises(openai.NotFoundError):
        client.completions.create(model="nope:1b", prompt="x")


def test_bad_requests(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "x"}], n=2)
    assert "n=2" in e.value.message and e.value.type == "invalid_request_error"
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": [
            {"type": "text", "text": "what is this?"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,aGk="}}]}])
    assert "does not support images" in e.value.message
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model=MODEL, messages=[])


def test_prompt_longer_than_context_keeps_its_end(pulled: Server) -> None:
    """As Ollama serves OpenAI's routes: an over-long prompt is truncated, not refused."""
    with pulled.client() as c:
        r = c.post("/v1/completions", json={"model": MODEL, "prompt": "word " * 400,
                                            "max_tokens": 4, "num_ctx": 256})
    assert r.status_code == 200, r.text
    assert r.json()["usage"]["prompt_tokens"] < 256


def test_malformed_and_invalid_bodies_are_openai_400(pulled: Server) -> None:
    with pulled.client() as c:
        bad_json = c.post("/v1/chat/completions", content=b"{not json",
                          headers={"content-type": "application/json"})
        no_model = c.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "x"}]})
        bad_stop = c.post("/v1/completions", json={"model": MODEL, "prompt": "x", "stop": 5})
        unknown = c.get("/v1/nowhere")
        native = c.post("/api/chat", content=b"{not json", headers={"content-type": "application/json"})
    assert "JSON" in assert_openai_error(bad_json, 400, "invalid_request_error")["message"]
    assert "model" in assert_openai_error(no_model, 400, "invalid_request_error")["message"]
    assert_openai_error(bad_stop, 400, "invalid_request_error")
    assert_openai_error(unknown, 404, "not_found_error")
    assert native.status_code == 400 and isinstance(native.json()["error"], str)


def test_openapi_documents_v1_routes(pulled: Server) -> None:
    with pulled.client() as c:
        spec = c.get("/openapi.json").json()
    chat = spec["paths"]["/v1/chat/completions"]["post"]
    assert "ChatCompletionRequest" in json.dumps(chat["requestBody"])
    assert "text/event-stream" in chat["responses"]["200"]["content"]
    assert {"/v1/completions", "/v1/models", "/v1/models/{model}"} <= set(spec["paths"])


def test_full_queue_is_503_with_retry_after(pulled: Server) -> None:
    """One slot and a queue of one: a third request is refused, with a hint for the SDK's retry."""
    srv = start_server(pulled.home, {"ROOST_NUM_PARALLEL": "1", "ROOST_MAX_QUEUE": "1"})
    long: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Write a long story."}]
    try:
        sdk = openai.OpenAI(base_url=srv.url + "/v1", api_key="unused", max_retries=0, timeout=120)
        sdk.chat.completions.create(model=MODEL, messages=long, max_tokens=1)  # loaded
        first_token = threading.Event()
        statuses: list[int] = []

        def active() -> None:
            for chunk in sdk.chat.completions.create(model=MODEL, messages=long, max_tokens=60,
                                                     temperature=0, stream=True):
                if chunk.choices and chunk.choices[0].delta.content:
                    first_token.set()

        def queued() -> None:
            with srv.client() as c:
                statuses.append(c.post("/v1/chat/completions", json={
                    "model": MODEL, "messages": long, "max_tokens": 2}).status_code)

        threads = [threading.Thread(target=active), threading.Thread(target=queued)]
        threads[0].start()
        assert first_token.wait(60)
        threads[1].start()
        time.sleep(0.5)
        with pytest.raises(openai.InternalServerError) as e:
            sdk.chat.completions.create(model=MODEL, messages=long, max_tokens=2)
        for t in threads:
            t.join(300)
        assert e.value.status_code == 503 and "server busy" in e.value.message
        assert e.value.response.headers["retry-after"]
        assert e.value.type == "api_error"
        assert statuses == [200]
        sdk.close()
    finally:
        stop_server(srv)


def test_mid_stream_error_is_an_sse_error_event(client: openai.OpenAI, pulled: Server) -> None:
    """The runner dies mid-answer: an error event the SDK raises on, and no [DONE]."""
    client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "x"}],
                                   max_tokens=1)
    pids = runner_pids(pulled)
    seen = []
    with pytest.raises(openai.APIError, match="stopped unexpectedly"):
        for chunk in client.chat.completions.create(
                model=MODEL, stream=True, max_tokens=300, temperature=0,
                messages=[{"role": "user", "content": "Write a long story about a ship."}]):
            seen.append(chunk.choices[0].delta.content)
            if len(seen) == 3:
                for pid in pids:
                    with contextlib.suppress(ProcessLookupError):  # another model's, unloaded since
                        os.kill(pid, signal.SIGKILL)
    assert seen[0] == "" and len(seen) >= 3


WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Get the current weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                   "required": ["city"]}}}
CLOCK = {"type": "function", "function": {
    "name": "get_time", "description": "Get the time in a time zone",
    "parameters": {"type": "object", "properties": {"zone": {"type": "string"}},
                   "required": ["zone"]}}}


def test_tool_call_arguments_are_a_json_string(client: openai.OpenAI) -> None:
    r = client.chat.completions.create(
        model=MODEL, tools=[WEATHER], temperature=0, seed=42, max_tokens=60,
        messages=[{"role": "user", "content": "What is the weather in Paris?"}])
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls"
    call = (choice.message.tool_calls or [])[0]
    assert call.type == "function" and call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris"}
    stream = client.chat.completions.create(
        model=MODEL, tools=[WEATHER], temperature=0, seed=42, max_tokens=60, stream=True,
        messages=[{"role": "user", "content": "What is the weather in Paris?"}])
    chunks = list(stream)
    deltas = [tc for c in chunks if c.choices for tc in (c.choices[0].delta.tool_calls or [])]
    assert [d.function.name for d in deltas if d.function] == ["get_weather"]
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_tool_choice_is_enforced(client: openai.OpenAI) -> None:
    ask = [{"role": "user", "content": "Tell me a joke about cats."}]
    named = client.chat.completions.create(
        model=MODEL, tools=[WEATHER, CLOCK], temperature=0, seed=42, max_tokens=60, messages=ask,
        tool_choice={"type": "function", "function": {"name": "get_time"}})
    calls = named.choices[0].message.tool_calls or []
    assert [c.function.name for c in calls] == ["get_time"]
    assert set(json.loads(calls[0].function.arguments)) == {"zone"}
    required = client.chat.completions.create(
        model=MODEL, tools=[WEATHER, CLOCK], temperature=0, seed=42, max_tokens=60, messages=ask,
        tool_choice="required")
    assert required.choices[0].finish_reason == "tool_calls"
    none = client.chat.completions.create(
        model=MODEL, tools=[WEATHER], temperature=0, seed=42, max_tokens=30, tool_choice="none",
        messages=[{"role": "user", "content": "What is the weather in Paris?"}])
    assert not none.choices[0].message.tool_calls and none.choices[0].message.content
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(
            model=MODEL, tools=[WEATHER], messages=ask,
            tool_choice={"type": "function", "function": {"name": "nope"}})
    for choice, tools in (({"type": "function", "function": "get_time"}, [WEATHER]),
                          ("required", [{"type": "function", "function": "get_time"}])):
        with pytest.raises(openai.BadRequestError):  # malformed: a 400, not a 500
            client.chat.completions.create(model=MODEL, tools=tools, messages=ask,  # type: ignore[arg-type]
                                           tool_choice=choice)  # type: ignore[arg-type]


def test_embeddings_base64_by_default_and_float(client: openai.OpenAI) -> None:
    default = client.embeddings.create(model=MODEL, input=["hello", "world"])  # SDK asks base64
    assert [d.index for d in default.data] == [0, 1]
    assert len(default.data[0].embedding) == 896
    assert abs(sum(x * x for x in default.data[0].embedding) - 1.0) < 1e-3
    floats = client.embeddings.create(model=MODEL, input="hello", encoding_format="float",
                                      dimensions=32)
    assert len(floats.data[0].embedding) == 32
    assert default.usage.prompt_tokens > 0
    with pytest.raises(openai.BadRequestError):
        client.embeddings.create(model=MODEL, input=[[1, 2, 3]])


def test_logprobs_chat_and_completions(client: openai.OpenAI) -> None:
    chat = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Say yes."}], max_tokens=4,
        temperature=0, seed=42, logprobs=True, top_logprobs=2)
    content = chat.choices[0].logprobs.content  # type: ignore[union-attr]
    assert content and all(len(t.top_logprobs) == 2 and t.logprob <= 0 for t in content)
    assert "".join(t.token for t in content) == chat.choices[0].message.content
    text = client.completions.create(model=MODEL, prompt="1, 2, 3,", max_tokens=4,
                                     temperature=0, seed=42, logprobs=2)
    lp = text.choices[0].logprobs
    assert lp is not None and lp.tokens and len(lp.token_logprobs or []) == len(lp.tokens)
    assert lp.text_offset is not None and lp.text_offset[0] == 0
