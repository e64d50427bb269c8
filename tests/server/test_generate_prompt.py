"""What /api/generate shows the model: the system text, then a Modelfile's MESSAGE layers, then
the prompt, in Ollama's order; a continued exchange (`context`) and a raw prompt leave the layers
out. The server runs the scripted fake runner (tests/support/fake_runner.py) only so that a test
can read the rendered prompt from its log; the route, the store and the template are real.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support import TOOLS_MODEL, FakeServer

MODEL = "fake-layered"
LAYERS = [{"role": "user", "content": "What colour is the sky?"},
          {"role": "assistant", "content": "Blue, mostly."}]


@pytest.fixture(scope="module")
def layered(fake: FakeServer) -> Iterator[FakeServer]:
    with fake.server.client() as c:
        r = c.post("/api/create", json={"model": MODEL, "from": TOOLS_MODEL, "stream": False,
                                        "system": "You are terse.", "messages": LAYERS})
        assert r.status_code == 200, r.text
    yield fake
    with fake.server.client() as c:
        c.request("DELETE", "/api/delete", json={"model": MODEL})


def _prompt(fake: FakeServer, **body: object) -> str:
    log = fake.script(answers=[["Green."]])
    with fake.server.client() as c:
        r = c.post("/api/generate", json={"model": MODEL, "prompt": "And the grass?",
                                          "stream": False, **body})
    assert r.status_code == 200, r.text
    [prompt] = fake.prompts(log)
    return prompt


def test_the_layers_come_between_the_system_text_and_the_prompt(layered: FakeServer) -> None:
    prompt = _prompt(layered)
    order = [prompt.index(s) for s in ("You are terse.", "What colour is the sky?",
                                       "Blue, mostly.", "And the grass?")]
    assert order == sorted(order), prompt
    own = _prompt(layered, system="You are verbose.")  # a request's system text replaces the model's
    assert "You are terse." not in own
    assert own.index("You are verbose.") < own.index("What colour is the sky?")


def test_a_continued_exchange_and_a_raw_prompt_have_no_layers(layered: FakeServer) -> None:
    assert "What colour is the sky?" not in _prompt(layered, context=[1, 2, 3])
    assert "What colour is the sky?" not in _prompt(layered, raw=True)
