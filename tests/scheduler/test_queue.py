"""Scheduling on a server with one slot: cancellation frees it, a full queue answers 503."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator

import httpx2 as httpx
import pytest

from tests.conftest import MODEL, Server, greedy, start_server, stop_server

LONG = {"model": MODEL, "prompt": "Write a very long story about the sea.", "options": greedy(300)}


@pytest.fixture(scope="module")
def one_slot(pulled: Server) -> Iterator[Server]:
    """A second server on the same store, with one sequence slot and a queue of one."""
    srv = start_server(pulled.home, {"ROOST_NUM_PARALLEL": "1", "ROOST_MAX_QUEUE": "1"})
    try:
        yield srv
    finally:
        stop_server(srv)


def test_cancelled_stream_frees_its_slot(one_slot: Server) -> None:
    with one_slot.client() as c:
        with c.stream("POST", "/api/generate", json=LONG) as r:
            for n, _line in enumerate(r.iter_lines()):
                if n == 2:
                    break  # the client hangs up mid-stream
        started = time.monotonic()
        r2 = c.post("/api/generate", json={"model": MODEL, "prompt": "Say hi.", "stream": False,
                                           "options": greedy(4)})
        elapsed = time.monotonic() - started
    assert r2.status_code == 200
    done = r2.json()
    # Had the slot stayed busy, this request would have waited for the ~300 tokens left.
    seconds_per_token = done["eval_duration"] / 1e9 / max(done["eval_count"], 1)
    assert elapsed < 100 * seconds_per_token


def test_full_queue_is_503_with_error_body(one_slot: Server) -> None:
    with one_slot.client() as c:
        c.post("/api/generate", json={"model": MODEL})  # loaded
    results: list[int] = []
    first_token = threading.Event()

    def stream_long() -> None:
        body = {**LONG, "options": greedy(60)}
        with one_slot.client() as c, c.stream("POST", "/api/generate", json=body) as r:
            for line in r.iter_lines():
                if line and not json.loads(line)["done"]:
                    first_token.set()  # and keep reading: the slot stays busy

    def queued() -> None:
        with one_slot.client() as c:
            results.append(c.post("/api/generate", json={**LONG, "stream": False,
                                                         "options": greedy(2)}).status_code)

    active = threading.Thread(target=stream_long)
    active.start()
    assert first_token.wait(60)
    waiting = threading.Thread(target=queued)
    waiting.start()
    time.sleep(0.5)
    with httpx.Client(base_url=one_slot.url, timeout=30) as c:
        r = c.post("/api/generate", json={**LONG, "stream": False})
    active.join(300)
    waiting.join(300)
    assert r.status_code == 503
    assert "server busy" in r.json()["error"] and r.headers["retry-after"]
    assert results == [200]
