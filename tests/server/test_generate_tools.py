"""Tool calls on /api/generate, as Ollama answers them for a model that can make them.

Generate offers no tools, but a prompt or a system text can describe some, and a model that
was trained to call them answers in its tagged form. Ollama's generate then returns them in
`tool_calls` on the final chunk, not as raw tags in `response`. The bundled 0.5B model calls
tools unreliably, so the server runs the scripted fake runner (tests/support/fake_runner.py):
the model's words are fixed text; the route, the template and the output parser are real.
"""

from __future__ import annotations

import json
from typing import Any

import ollama

from tests.support import TOOLS_MODEL, FakeServer, tool_call

SYSTEM = "You may call get_weather(city) by writing a <tool_call> block."
PROMPT = "What is the weather in Paris?"
ANSWER = ["Let me look.", tool_call("get_weather", city="Paris")]
CALL = {"name": "get_weather", "arguments": {"city": "Paris"}}


def _generate(fake: FakeServer, **body: Any) -> Any:
    with fake.server.client() as c:
        r = c.post("/api/generate", json={"model": TOOLS_MODEL, "prompt": PROMPT,
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


def test_an_answer_without_a_call_has_no_tool_calls_field(fake: FakeServer) -> None:
    fake.script(rules=[("Paris", ["It is sunny, I think."])])
    body = _generate(fake, stream=False).json()
    assert body["response"] == "It is sunny, I think." and "tool_calls" not in body


def test_the_official_client_still_reads_the_answer(fake: FakeServer) -> None:
    fake.script(rules=[("Paris", ANSWER)])
    r = ollama.Client(host=fake.server.url).generate(model=TOOLS_MODEL, prompt=PROMPT,
                                                     system=SYSTEM)
    assert r.response == "Let me look." and r.done
