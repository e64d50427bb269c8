"""A client that hangs up stops its generation: its slot serves the next request at once.

The server runs one slot (ROOST_NUM_PARALLEL=1), so a sequence that went on generating for
a departed client would hold up the next request until its context filled (minutes).
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import MODEL, Server, start_server, stop_server

LONG = "Count from 1 to 5000, one number per line, with no other text."


@pytest.fixture(scope="module")
def one_slot(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = start_server(Path(tmp_path_factory.mktemp("one-slot")), {"ROOST_NUM_PARALLEL": "1"})
    try:
        with srv.client() as c:
            assert c.post("/api/pull", json={"model": MODEL, "stream": False}).status_code == 200
            c.post("/api/generate", json={"model": MODEL, "keep_alive": "10m"})
        yield srv
    finally:
        stop_server(srv)


def _send_and_hang_up(server: Server, path: str, body: dict, after: float) -> None:
    host, port = server.host.rsplit(":", 1)
    data = json.dumps(body).encode()
    with socket.create_connection((host, int(port))) as s:
        s.sendall(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                  f"Content-Length: {len(data)}\r\n\r\n".encode() + data)
        time.sleep(after)  # generating by now; then the client goes away


def _next_request_seconds(server: Server) -> float:
    started = time.monotonic()
    with server.client() as c:
        r = c.post("/api/generate", json={"model": MODEL, "prompt": "Say hi.", "stream": False,
                                          "options": {"temperature": 0, "num_predict": 4}})
        assert r.status_code == 200, r.text
    return time.monotonic() - started


CASES = [
    ("/api/generate", {"model": MODEL, "prompt": LONG, "stream": False,
                       "options": {"num_predict": 3000, "temperature": 0}}),
    ("/api/chat", {"model": MODEL, "stream": True, "options": {"num_predict": 3000, "temperature": 0},
                   "messages": [{"role": "user", "content": LONG}]}),
    ("/v1/chat/completions", {"model": MODEL, "max_tokens": 3000, "temperature": 0, "stream": False,
                              "messages": [{"role": "user", "content": LONG}]}),
    ("/v1/completions", {"model": MODEL, "prompt": LONG, "max_tokens": 3000, "temperature": 0,
                         "stream": True}),
    # Tools offered and JSON that calls one: the answer is held back and written only at the
    # end, so the disconnect must be noticed without a failed write.
    ("/api/chat", {"model": MODEL, "stream": True, "options": {"num_predict": 3000, "temperature": 0},
                   "tools": [{"type": "function", "function": {"name": "count", "parameters": {
                       "type": "object", "properties": {"numbers": {"type": "array"}}}}}],
                   "format": {"type": "object", "required": ["name", "arguments"], "properties": {
                       "name": {"const": "count"}, "arguments": {"type": "object", "required": ["numbers"],
                       "properties": {"numbers": {"type": "array", "items": {"type": "integer"}}}}}},
                   "messages": [{"role": "user", "content": LONG + " Call count with them."}]}),
]


@pytest.mark.parametrize("path,body", CASES, ids=[f"{p} stream={b['stream']}{' tools' * ('tools' in b)}"
                                                 for p, b in CASES])
def test_hanging_up_frees_the_slot(one_slot: Server, path: str, body: dict) -> None:
    _send_and_hang_up(one_slot, path, body, after=1.5)
    # The next request starts within about a second of the hang-up, not after the 3000 tokens
    # (a minute or more here); the bound leaves room for a loaded machine.
    assert _next_request_seconds(one_slot) < 20
