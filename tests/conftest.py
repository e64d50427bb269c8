"""Shared fixtures: a real `roost serve` on a free loopback port, with its own ROOST_HOME.

No part of the product is replaced: the server is the real process, the model the real
qwen2.5-coder:0.5b from the installed part packages, the store real files.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import httpx2 as httpx
import pytest

if TYPE_CHECKING:
    from tests.support import FakeServer

MODEL = "qwen2.5-coder:0.5b"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    url: str
    host: str  # ROOST_HOST value
    home: Path
    proc: subprocess.Popen[bytes]
    log: Path

    def env(self, **extra: str) -> dict[str, str]:
        return {**os.environ, "ROOST_HOST": self.host, "ROOST_HOME": str(self.home),
                "NO_COLOR": "1", **extra}

    def client(self, timeout: float = 120) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=timeout)


def start_server(home: Path, extra_env: dict[str, str] | None = None) -> Server:
    port = free_port()
    host = f"127.0.0.1:{port}"
    home.mkdir(parents=True, exist_ok=True)
    log = home / "test-server.log"
    env = {**os.environ, "ROOST_HOST": host, "ROOST_HOME": str(home), **(extra_env or {})}
    with log.open("ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "roost", "serve"], env=env,
                                stdout=out, stderr=out, stdin=subprocess.DEVNULL)
    url = f"http://{host}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/api/version", timeout=1).status_code == 200:
                return Server(url, host, home, proc, log)
        except httpx.TransportError:
            time.sleep(0.1)
        if proc.poll() is not None:
            break
    proc.kill()
    raise RuntimeError(f"server did not start:\n{log.read_text()}")


def stop_server(server: Server) -> None:
    server.proc.terminate()
    try:
        server.proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        server.proc.kill()
        server.proc.wait()


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = start_server(tmp_path_factory.mktemp("roost-home"))
    try:
        yield srv
    finally:
        stop_server(srv)


@pytest.fixture(scope="session")
def pulled(server: Server) -> Server:
    """The session server with qwen2.5-coder:0.5b pulled into its store."""
    with server.client() as c:
        r = c.post("/api/pull", json={"model": MODEL, "stream": False})
        assert r.status_code == 200, r.text
        assert r.json() == {"status": "success"}
    return server


@pytest.fixture(scope="module")
def fake(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeServer]:
    """A server of the module's own whose runner is the scripted fake (tests/support/
    fake_runner.py), for what no small model shows reliably: tool calls, thinking."""
    from tests.support import start_fake_server

    srv = start_fake_server(tmp_path_factory.mktemp("fake-runner"))
    try:
        yield srv
    finally:
        stop_server(srv.server)


def upload_blob(server: Server, path: Path) -> str:
    """POST a file to /api/blobs; its digest."""
    data = path.read_bytes()
    digest = f"sha256:{hashlib.sha256(data).hexdigest()}"
    with server.client() as c:
        assert c.post(f"/api/blobs/{digest}", content=data).status_code == 201
    return digest


@contextlib.contextmanager
def own_pulled_server(home: Path) -> Iterator[Server]:
    """A server of a test's own on `home`, with qwen2.5-coder:0.5b pulled; stopped on exit."""
    srv = start_server(home)
    try:
        with srv.client() as c:
            r = c.post("/api/pull", json={"model": MODEL, "stream": False})
            assert r.status_code == 200, r.text
        yield srv
    finally:
        stop_server(srv)


def greedy(num_predict: int = 24, **extra: object) -> dict[str, object]:
    """Options that make the model deterministic."""
    return {"temperature": 0, "seed": 42, "num_predict": num_predict, **extra}


def roost_cli(server: Server, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """The real `roost` command against `server`, as a script runs it."""
    return subprocess.run([sys.executable, "-m", "roost", *args], env=server.env(), input=stdin,
                          text=True, capture_output=True, timeout=120)


def one_line_error(r: subprocess.CompletedProcess[str], *words: str) -> None:
    """Exit 1 with one `Error: ...` line on stderr (naming `words`), never a traceback."""
    assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
    assert r.stderr.startswith("Error: ") and r.stderr.count("\n") == 1, r.stderr
    assert "Traceback" not in r.stderr and all(w in r.stderr for w in words), r.stderr
