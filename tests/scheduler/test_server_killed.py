"""kill -9 of the server: its runners exit by themselves within 2 s, whether idle, decoding
or still loading, and a new server on the same ROOST_HOME finds no stray process and every
stored model intact.

Real servers, real runners, the real model, pulled into this module's own ROOST_HOME so that
runners can be told apart from other tests' by the path in their command line.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2 as httpx
import pytest

from tests.conftest import MODEL, Server, greedy, own_pulled_server, start_server, stop_server
from tests.support.runner_side import (
    RUNNER_MODULE,
    children,
    runner_processes,
    timed_stream,
    wait_gone,
    weights,
)

EXIT_WITHIN = 2.0  # seconds, the bound


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A ROOST_HOME of this module's own with the model pulled; no runner of it outlives it."""
    path = tmp_path_factory.mktemp("killed-home")
    with own_pulled_server(path):
        pass
    try:
        yield path
    finally:
        for pid in runner_processes(str(path)):  # only if a test failed: leave nothing behind
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def _kill_server(server: Server) -> float:
    """SIGKILL the server and reap it; return the moment it was sent (time.monotonic)."""
    sent = time.monotonic()
    server.proc.kill()
    server.proc.wait()
    return sent


def _runner_of(server: Server, timeout: float = 60) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pids = [p for p in children(server.proc.pid) if p in runner_processes(str(server.home))]
        if pids:
            return pids[0]
        time.sleep(0.05)
    raise AssertionError("no runner process appeared")


def _assert_exits(pid: int, sent: float) -> None:
    gone = wait_gone(pid, EXIT_WITHIN + 3)
    assert gone is not None, f"runner {pid} still running {EXIT_WITHIN + 3} s after the server died"
    latency = gone - sent
    print(f"runner {pid} gone {latency:.3f} s after kill -9 of the server")
    assert latency < EXIT_WITHIN


def _tags(server: Server) -> list[tuple[str, str, int]]:
    with server.client() as c:
        models = c.get("/api/tags").json()["models"]
    return sorted((m["name"], m["digest"], m["size"]) for m in models)


def _blobs_intact(home: Path) -> None:
    """Every blob's content still hashes to its name: nothing was cut or half written."""
    for blob in (home / "blobs").iterdir():
        assert blob.name.startswith("sha256-"), blob
        with blob.open("rb") as f:
            assert hashlib.file_digest(f, "sha256").hexdigest() == blob.name[7:], blob


def test_runner_exits_when_the_server_dies_mid_stream_and_a_restart_finds_all(home: Path) -> None:
    server = start_server(home)
    try:
        before = _tags(server)
        with server.client() as c:
            c.post("/api/generate", json={"model": MODEL, "keep_alive": "5m"})
            runner = _runner_of(server)
            sent: list[float] = []

            def kill_at(n: int) -> bool:
                if n == 3:
                    sent.append(_kill_server(server))
                return False

            with contextlib.suppress(httpx.TransportError):
                timed_stream(c, "/api/generate", {"model": MODEL, "options": greedy(300),
                                                  "prompt": "Write a long story about a fox."},
                             kill_at)
        _assert_exits(runner, sent[0])
    finally:
        if server.proc.poll() is None:
            stop_server(server)

    again = start_server(home)
    try:
        assert runner_processes(str(home)) == []  # no stray from the killed server
        assert _tags(again) == before
        _blobs_intact(home)
        with again.client() as c:
            r = c.post("/api/generate", json={"model": MODEL, "prompt": "Say hi.", "stream": False,
                                              "options": greedy(4)})
            assert r.status_code == 200 and r.json()["response"], r.text
        idle = _runner_of(again)
        _assert_exits(idle, _kill_server(again))  # an idle runner goes too
    finally:
        if again.proc.poll() is None:
            stop_server(again)
    assert runner_processes(str(home)) == []


def test_runner_still_loading_exits_when_the_server_dies(home: Path) -> None:
    """ROOST_TEST_FAULT_WARMUP=hang: a runner stuck loading, never reading its socket."""
    server = start_server(home, {"ROOST_TEST_FAULT_WARMUP": "hang"})
    client = threading.Thread(target=_generate_quietly, args=(server,))
    try:
        client.start()
        runner = _runner_of(server)
        deadline = time.monotonic() + 60
        while str(weights(home)) not in Path(f"/proc/{runner}/maps").read_text():  # loading began
            assert time.monotonic() < deadline, "the runner never mapped the model"
            time.sleep(0.05)
        _assert_exits(runner, _kill_server(server))
    finally:
        if server.proc.poll() is None:
            stop_server(server)
        client.join(30)
    assert runner_processes(str(home)) == []


def _generate_quietly(server: Server) -> None:
    """A request that makes the server load the model; it ends when the server dies."""
    with contextlib.suppress(httpx.TransportError), server.client(timeout=60) as c:
        c.post("/api/generate", json={"model": MODEL, "prompt": "Hi", "stream": False})


@pytest.mark.parametrize("case", ["other parent", "socket closed"])
def test_a_runner_whose_server_died_before_it_started_exits_at_once(home: Path, case: str) -> None:
    """The race PR_SET_PDEATHSIG leaves open: the server dies before the runner asks for it."""
    ours, theirs = socket.socketpair()
    parent = os.getpid() if case == "socket closed" else 1
    proc = subprocess.Popen(
        [sys.executable, "-m", RUNNER_MODULE, "--fd", str(theirs.fileno()),
         "--model", str(weights(home)), "--num-ctx", "512", "--parent-pid", str(parent)],
        pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL, stderr=subprocess.PIPE)
    theirs.close()
    if case == "socket closed":
        ours.close()
    try:
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 1 and b"Traceback" not in err, err.decode()[-2000:]
    finally:
        ours.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
