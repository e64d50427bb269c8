"""Each dialect's error shape, whichever layer answers: a route, FastAPI's own 404, or the
drain's last frame of a stream (server/error_shapes.py)."""

from __future__ import annotations

import json

from roost.server import error_shapes
from tests.conftest import Server


def test_an_unknown_path_answers_in_its_dialect(server: Server) -> None:
    with server.client() as c:
        registry = c.get("/v2/no/such/route/here")
        anthropic = c.get("/v1/messages/nothing-here")
        ollama = c.get("/api/nothing-here")
    assert registry.status_code == 404
    assert registry.json()["errors"][0]["code"] == "NAME_UNKNOWN"
    assert anthropic.json()["type"] == "error" and anthropic.json()["error"]["type"] == "not_found_error"
    assert set(ollama.json()) == {"error"}


def test_a_stream_ended_by_the_drain_gets_its_dialects_last_event() -> None:
    anthropic = error_shapes.sse_error_frame("/v1/messages", "the server is shutting down")
    event, data = anthropic.decode().strip().split("\n")
    assert event == "event: error"
    assert json.loads(data.removeprefix("data: ")) == {
        "type": "error", "error": {"type": "api_error", "message": "the server is shutting down"}}
    openai = error_shapes.sse_error_frame("/v1/chat/completions", "bye").decode()
    assert openai.endswith("\n\n") and json.loads(openai[len("data: "):])["error"]["message"] == "bye"
