"""SIGTERM (or Ctrl+C) drains the server: no new connections, streams in flight finish or end
with an error frame in their dialect by ROOST_DRAIN_TIMEOUT, no runner is left, exit 0.

Each test runs its own real server (it is going to be stopped) on its own ROOST_HOME, whose
store is hard-linked from one pulled in this module, with the model loaded; the runners are
found in /proc by their weights path under that home, so one that outlived its server would
be seen.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import MODEL, Server, start_server
from tests.support.signals_and_hangups import (
    link_store,
    load_model,
    pulled_template,
    read_response,
    runner_pids,
    send_raw,
)

LONG = "Write a long Python module implementing a linked list class with many methods, each with a docstring."
EXIT_TIMEOUT = 120  # s: only a server that does not stop takes this long
MARGIN = 2.0  # s past the drain time for the error frames to arrive on a loaded machine


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return pulled_template(tmp_path_factory.mktemp("drain-template"))


@pytest.fixture
def serve(template: Path, tmp_path: Path) -> Iterator[Any]:
    """Start servers with the model loaded; whatever is left of them is killed afterwards."""
    started: list[Server] = []

    def start(**env: str) -> Server:
        srv = start_server(link_store(template, tmp_path / f"home{len(started)}"), env)
        started.append(srv)
        load_model(srv)
        return srv

    yield start
    for srv in started:
        if srv.proc.poll() is None:
            srv.proc.kill()
            srv.proc.wait()
        for pid in runner_pids(srv.home):
            os.kill(pid, signal.SIGKILL)


def _ollama_stream(srv: Server, num_predict: int, first: threading.Event) -> list[dict[str, Any]]:
    with srv.client(timeout=EXIT_TIMEOUT) as c, c.stream("POST", "/api/chat", json={
            "model": MODEL, "messages": [{"role": "user", "content": LONG}],
            "options": {"num_predict": num_predict, "temperature": 0}}) as r:
        assert r.status_code == 200
        lines = []
        for line in r.iter_lines():
            if line:
                lines.append({**json.loads(line), "at": time.monotonic()})
                first.set()
        return lines


def _openai_stream(srv: Server, max_tokens: int, first: threading.Event) -> list[dict[str, Any]]:
    with srv.client(timeout=EXIT_TIMEOUT) as c, c.stream("POST", "/v1/chat/completions", json={
            "model": MODEL, "messages": [{"role": "user", "content": LONG}], "stream": True,
            "max_tokens": max_tokens, "temperature": 0}) as r:
        assert r.status_code == 200
        events = []
        for line in r.iter_lines():
            if line.startswith("data: "):
                data = line.removeprefix("data: ")
                event = {"done": True} if data == "[DONE]" else json.loads(data)
                events.append({**event, "at": time.monotonic()})
                first.set()
        return events


def _streaming(pool: ThreadPoolExecutor, srv: Server, tokens: int) -> list[Future[Any]]:
    """An Ollama and an OpenAI stream, returned once both have sent something."""
    started = [threading.Event(), threading.Event()]
    futures = [pool.submit(_ollama_stream, srv, tokens, started[0]),
               pool.submit(_openai_stream, srv, tokens, started[1])]
    for event, future in zip(started, futures, strict=True):
        while not event.wait(0.05):
            assert not future.done(), future.result()
    return futures


def _refused(srv: Server) -> bool:
    host, port = srv.host.rsplit(":", 1)
    try:
        socket.create_connection((host, int(port)), timeout=1).close()
    except ConnectionRefusedError:
        return True
    except OSError:  # reset: it reached the backlog as the listening socket closed
        pass
    return False


def _exit(srv: Server, sig: signal.Signals) -> tuple[float, int]:
    """Signal the server; when the listening socket was gone and when the process exited."""
    sent = time.monotonic()
    srv.proc.send_signal(sig)
    refused_at = None
    while srv.proc.poll() is None and time.monotonic() - sent < EXIT_TIMEOUT:
        if refused_at is None and _refused(srv):
            refused_at = time.monotonic()
        time.sleep(0.02)
    code = srv.proc.wait(timeout=1)
    assert refused_at is not None, "new connections were accepted until the end"
    return refused_at - sent, code


def test_a_stream_that_ends_within_the_drain_time_ends_whole(serve: Any) -> None:
    # A drain time long enough for a loaded machine: the streams end by themselves first.
    srv = serve(ROOST_DRAIN_TIMEOUT=f"{EXIT_TIMEOUT}s")
    with ThreadPoolExecutor(2) as pool:
        ollama, openai = _streaming(pool, srv, tokens=16)
        sent = time.monotonic()
        srv.proc.send_signal(signal.SIGTERM)
        code = srv.proc.wait(timeout=EXIT_TIMEOUT)
        exited = time.monotonic() - sent
        lines, events = ollama.result(), openai.result()
    assert code == 0, srv.log.read_text()
    assert min(lines[-1]["at"], events[-1]["at"]) > sent  # both were in flight at the signal
    assert lines[-1]["done"] is True and lines[-1]["done_reason"] == "length", lines[-1]
    assert events[-1] == {"done": True, "at": events[-1]["at"]}, events[-2:]
    assert events[-2]["choices"] == [] or events[-2]["choices"][0]["finish_reason"] == "length"
    assert runner_pids(srv.home) == []
    print(f"\nSIGTERM with two 16-token streams in flight: exit 0 after {exited:.2f} s")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_streams_past_the_drain_time_end_with_an_error_frame(serve: Any, sig: signal.Signals) -> None:
    srv = serve(ROOST_DRAIN_TIMEOUT="1s")
    # Not streamed, so nothing is sent before the drain ends them: a 503 in each shape. Sent
    # first, so they are in the server once the streams flow.
    # Greedy, and a long answer: sampled, "count to 5000" once ended after one token, before
    # the drain time, and that answer was rightly a 200.
    whole = [send_raw(srv, "/api/generate", {"model": MODEL, "prompt": LONG, "stream": False,
                                              "options": {"num_predict": 3000, "temperature": 0}}),
             send_raw(srv, "/v1/chat/completions", {"model": MODEL, "max_tokens": 3000, "temperature": 0,
                                                     "messages": [{"role": "user", "content": LONG}]})]
    with ThreadPoolExecutor(2) as pool:
        ollama, openai = _streaming(pool, srv, tokens=3000)
        sent = time.monotonic()
        refused_after, code = _exit(srv, sig)
        exited = time.monotonic() - sent
        lines, events = ollama.result(), openai.result()
    answers = [read_response(sock) for sock in whole]
    assert code == 0, srv.log.read_text()
    assert runner_pids(srv.home) == []
    assert "shutting down" in lines[-1]["error"] and "done" not in lines[-1], lines[-1]
    assert "shutting down" in events[-1]["error"]["message"], events[-1]
    for at in (lines[-1]["at"], events[-1]["at"]):
        assert 0.9 < at - sent < 1.0 + MARGIN, at - sent  # ran for the drain time, then ended
    (status, ollama_error), (openai_status, openai_error) = answers
    assert status == 503 and "shutting down" in json.loads(ollama_error)["error"], ollama_error
    assert openai_status == 503, openai_error
    assert "shutting down" in json.loads(openai_error)["error"]["message"], openai_error
    ended = max(lines[-1]["at"], events[-1]["at"]) - sent
    print(f"\n{sig.name} with streams past a 1 s drain: listener closed after {refused_after:.2f} s,"
          f" streams ended after {ended:.2f} s, exit 0 after {exited:.2f} s")


def test_an_idle_server_exits_at_once(serve: Any) -> None:
    srv = serve()  # the default drain time (10 s) is not waited for when nothing is in flight
    sent = time.monotonic()
    srv.proc.send_signal(signal.SIGTERM)
    code = srv.proc.wait(timeout=EXIT_TIMEOUT)
    exited = time.monotonic() - sent
    assert code == 0 and runner_pids(srv.home) == []
    assert exited < 5, exited
    print(f"\nSIGTERM, idle with the model loaded: exit 0 after {exited:.2f} s")


def test_a_second_ctrl_c_ends_the_streams_at_once(serve: Any) -> None:
    srv = serve(ROOST_DRAIN_TIMEOUT=f"{EXIT_TIMEOUT}s")
    with ThreadPoolExecutor(2) as pool:
        ollama, openai = _streaming(pool, srv, tokens=3000)
        srv.proc.send_signal(signal.SIGINT)
        time.sleep(0.5)
        assert srv.proc.poll() is None and not ollama.done()  # draining
        sent = time.monotonic()
        srv.proc.send_signal(signal.SIGINT)
        code = srv.proc.wait(timeout=EXIT_TIMEOUT)
        exited = time.monotonic() - sent
        lines, events = ollama.result(), openai.result()
    assert code == 0 and runner_pids(srv.home) == []
    assert lines[-1]["error"].endswith("ended at once"), lines[-1]
    assert events[-1]["error"]["message"].endswith("ended at once"), events[-1]
    assert "Traceback" not in srv.log.read_text()
    print(f"\na second SIGINT: streams ended after {lines[-1]['at'] - sent:.2f} s,"
          f" exit 0 after {exited:.2f} s")
