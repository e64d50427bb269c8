"""Tool calls on /api/generate, as Ollama answers them.

Generate offers no tools, but a prompt or a system text can describe some, and a model that
was trained to call them answers in its tagged form. For a model whose config names a built-in
parser (Ollama's qwen3, harmony, ...; `parser` at create), Ollama's generate returns them in
`tool_calls` on the final chunk, not as raw tags in `response`; a model without one keeps
the text as written. The bundled 0.5B model calls tools unreliably, so the server runs the
scripted fake runner (tests/support/fake_runner.py): the model's words are fixed text; the
route, the template and the output parser are real.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import ollama
import pytest

from tests.support import TOOLS_MODEL, FakeServer, tool_call

PARSED = "fake-parsed"  # TOOLS_MODEL with a parser named in its config
SYSTEM = "You may call get_weather(city) by writing a <tool_call> block."
PROMPT = "What is the weather in Paris?"
ANSWER = ["Let me look.", tool_call("get_weather", city="Paris")]
CALL = {"name": "get_weather", "arguments": {"city": "Paris"}}


@pytest.fixture(scope="module", autouse=True)
def parsed_model(fake: FakeServer) -> Iterator[None]:
    with fake.server.client() as c:
        r = c.post("/api/create", json={"model": PARSED, "from": TOOLS_MODEL, "parser": "qwen3",
                                        "stream": False})
        assert r.status_code == 200, r.text
        assert c.post("/api/show", json={"model": PARSED}).json()["parser"] == "qwen3"
    yield
    with fake.server.client() as c:
        c.request("DELETE", "/api/delete", json={"model": PARSED})


def _generate(fake: FakeServer, model: str = PARSED, **body: Any) -> Any:
    with fake.server.client() as c:
        r = c.post("/api/generate", json={"model": model, "prompt": PROMPT,
                                          "system": SYSTEM, **body})
    assert r.status_code == 200, r.text
    return r


def _function(call: dict[str, Any]) -> dict[str, Any]:
    assert call["id"].startswith("call_")
    return {k: v for k, v in call["function"].items() if k != "index"}


def test_a_whole_answer_carries_the_call_beside_its_words(fake: FakeServer) -> None:
    log = fake.script(rules=[("Paris", ANSWER)])
    body = _generate(fake, stream=False).json()
    assert body["response"] == "Let me look."
    assert [_function(c) for c in body["tool_calls"]] == [CALL]
    assert body["done"] is True and body["context"]
    assert SYSTEM in fake.prompts(log)[0]


def test_a_streamed_call_comes_on_the_final_chunk_only(fake: FakeServer) -> None:
    fake.script(rules=[("Paris", ANSWER)])
    chunks = [json.loads(line) for line in _generate(fake, stream=True).text.splitlines()]
    *partial, final = chunks
    assert all("tool_calls" not in c for c in partial)
    assert "".join(c["response"] for c in partial) == "Let me look."
    assert "<tool_call>" not in "".join(c["response"] for c in chunks)
    assert final["done"] is True and [_function(c) for c in final["tool_calls"]] == [CALL]


def test_a_raw_prompt_gets_the_text_as_the_model_wrote_it(fake: FakeServer) -> None:
    fake.script(rules=[("Paris", ANSWER)])
    body = _generate(fake, stream=False, raw=True, system=None).json()
    assert "tool_calls" not in body
    assert body["response"] == "".join(ANSWER)


def test_a_model_without_a_parser_keeps_the_tags_in_its_text(fake: FakeServer) -> None:
    """Ollama parses generate's output only with a model's built-in parser."""
    fake.script(rules=[("Paris", ANSWER)])
    body = _generate(fake, model=TOOLS_MODEL, stream=False).json()
    assert "tool_calls" not in body and body["response"] == "".join(ANSWER)


def test_an_answer_without_a_call_has_no_tool_calls_field(fake: FakeServer) -> None:
    fake.script(rules=[("Paris", ["It is sunny, I think."])])
    body = _generate(fake, stream=False).json()
    assert body["response"] == "It is sunny, I think." and "tool_calls" not in body


def test_the_official_client_still_reads_the_answer(fake: FakeServer) -> None:
    fake.script(rules=[("Paris", ANSWER)])
    r = ollama.Client(host=fake.server.url).generate(model=PARSED, prompt=PROMPT,
                                                     system=SYSTEM)
    assert r.response == "Let me look." and r.done
