"""Scheduling on a server with one slot: cancellation frees it, a full queue answers 503."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx2 as httpx
import pytest

from tests.conftest import MODEL, Server, greedy, start_server, stop_server

QUEUE = 4
LONG = {"model": MODEL, "prompt": "Write a very long story about the sea.", "options": greedy(300)}


@pytest.fixture(scope="module")
def one_slot(pulled: Server) -> Iterator[Server]:
    """A second server on the same store, with one sequence slot and a queue of four."""
    srv = start_server(pulled.home, {"ROOST_NUM_PARALLEL": "1", "ROOST_MAX_QUEUE": str(QUEUE)})
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


@dataclass
class Sent:
    status: int
    seconds: float  # from sending to the whole answer
    response: httpx.Response


def burst(server: Server, n: int, body: dict[str, Any], done: Callable[[list[Sent]], bool],
          then: Callable[[], None]) -> list[Sent]:
    """n requests sent at once from n threads; `then()` runs once `done(answers so far)`."""
    gate = threading.Barrier(n)
    results: list[Sent] = []
    changed = threading.Condition()

    def send() -> None:
        with server.client(timeout=300) as c:
            c.get("/api/version")  # connected before the gate, so only the request is timed
            gate.wait()
            sent = time.monotonic()
            r = c.post("/api/generate", json=body)
            with changed:
                results.append(Sent(r.status_code, time.monotonic() - sent, r))
                changed.notify_all()

    threads = [threading.Thread(target=send) for _ in range(n)]
    for t in threads:
        t.start()
    with changed:
        changed.wait_for(lambda: done(results), timeout=120)
    then()
    for t in threads:
        t.join(300)
    assert len(results) == n
    return results


def burst_while_busy(server: Server) -> list[Sent]:
    """While one stream holds the only slot, 2 x QUEUE requests at once; the stream hangs up
    once QUEUE of them have been refused, so the ones waiting can run."""
    holding, release = threading.Event(), threading.Event()

    def hold_the_slot() -> None:
        with server.client() as c, c.stream("POST", "/api/generate", json=LONG) as r:
            for _ in r.iter_lines():
                holding.set()
                if release.wait(0):
                    break  # hang up: the slot frees, the queued requests run

    blocker = threading.Thread(target=hold_the_slot)
    blocker.start()
    try:
        assert holding.wait(120)
        # raw: no chat template, so the time measured is the server's and the scheduler's
        body = {"model": MODEL, "prompt": "Say hi.", "raw": True, "stream": False,
                "options": greedy(2)}
        return burst(server, 2 * QUEUE, body,
                     done=lambda rs: sum(r.status == 503 for r in rs) >= QUEUE, then=release.set)
    finally:
        release.set()
        blocker.join(300)


def test_a_burst_past_the_queue_is_refused_at_once_and_the_rest_complete(one_slot: Server) -> None:
    """ROOST_NUM_PARALLEL=1, ROOST_MAX_QUEUE=4: while one stream holds the slot, 8 requests
    at once; 4 wait and complete with 200, 4 get 503 + Retry-After in well under a second."""
    results = burst_while_busy(one_slot)
    refused = [r for r in results if r.status == 503]
    accepted = [r for r in results if r.status != 503]
    assert len(refused) == QUEUE and len(accepted) == QUEUE, [r.status for r in results]
    for r in accepted:
        assert r.status == 200 and r.response.json()["done"], r.response.text[:200]
    for r in refused:
        assert r.seconds < 1.0, [round(x.seconds, 3) for x in refused]
        assert r.response.headers["retry-after"] and "server busy" in r.response.json()["error"]
