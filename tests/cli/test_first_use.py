"""What a new user meets first: a busy port, a mistyped ROOST_HOST, bare `roost`, a pull's
progress, a model name that is close to a catalog one. Real processes on loopback ports."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2 as httpx
import pytest

from roost.models.catalog import CATALOG, close_names
from tests.conftest import MODEL, Server, start_server, stop_server

ROOST = [sys.executable, "-m", "roost"]


def roost(*args: str, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*ROOST, *args], env={**os.environ, "NO_COLOR": "1", **env}, text=True,
                          capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL)


def listening(family: socket.AddressFamily, host: str) -> socket.socket:
    """A plain listening socket on a free port: someone else's server."""
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.bind((host, 0))
    sock.listen()
    return sock


def assert_still_serves(sock: socket.socket) -> None:
    host, port = sock.getsockname()[:2]
    with socket.create_connection((host, port), timeout=5):
        conn, _ = sock.accept()
        conn.close()


def ipv6_loopback() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.fixture
def busy() -> Iterator[socket.socket]:
    sock = listening(socket.AF_INET, "127.0.0.1")
    try:
        yield sock
    finally:
        sock.close()


def test_serve_on_a_busy_port_is_one_line_and_exit_1(busy: socket.socket, tmp_path: Path) -> None:
    port = busy.getsockname()[1]
    r = roost("serve", env={"ROOST_HOST": f"127.0.0.1:{port}", "ROOST_HOME": str(tmp_path)})
    output = r.stdout + r.stderr
    assert r.returncode == 1, output
    assert r.stdout == "" and output.count("\n") == 1, output
    assert output.startswith("Error: ") and f"port {port} is in use" in output
    assert "ROOST_HOST" in output and "Traceback" not in output
    assert_still_serves(busy)


@pytest.mark.skipif(not ipv6_loopback(), reason="no IPv6 loopback here")
def test_serve_binds_an_ipv6_literal(tmp_path: Path) -> None:
    taken = listening(socket.AF_INET6, "::1")
    try:
        port = taken.getsockname()[1]
        r = roost("serve", env={"ROOST_HOST": f"[::1]:{port}", "ROOST_HOME": str(tmp_path)})
        assert r.returncode == 1 and f"port {port} is in use" in r.stderr, r.stderr
        assert (r.stdout + r.stderr).count("\n") == 1
        assert_still_serves(taken)
    finally:
        taken.close()
    with socket.socket(socket.AF_INET6) as s:
        s.bind(("::1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "ROOST_HOST": f"[::1]:{port}", "ROOST_HOME": str(tmp_path)}
    proc = subprocess.Popen([*ROOST, "serve"], env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                r2 = httpx.get(f"http://[::1]:{port}/api/version", timeout=1)
                break
            except httpx.TransportError:
                assert proc.poll() is None and time.monotonic() < deadline, "server did not start"
                time.sleep(0.1)
        assert r2.status_code == 200 and r2.json()["server"] == "roost"
    finally:
        proc.terminate()
        proc.wait(timeout=15)


def test_serve_still_serves_after_binding_itself(tmp_path: Path) -> None:
    srv = start_server(tmp_path / "home")
    try:
        with srv.client() as c:
            assert c.get("/api/version").json()["server"] == "roost"
        # A second server on the same port is the one-line error, and the first one lives on.
        r = roost("serve", env={"ROOST_HOST": srv.host, "ROOST_HOME": str(srv.home)})
        assert r.returncode == 1 and "is in use" in r.stderr and r.stderr.count("\n") == 1
        with srv.client() as c:
            assert c.get("/api/version").status_code == 200
    finally:
        stop_server(srv)
    assert "Application shutdown complete" in srv.log.read_text()  # a clean stop on SIGTERM


BAD_HOSTS = ["foo:bar", "127.0.0.1:99999", ":-1", "http://[::1"]


@pytest.mark.parametrize("value", BAD_HOSTS)
def test_bad_roost_host_is_one_line_for_every_command(value: str, tmp_path: Path) -> None:
    for args in (["list"], ["run", "m", "hi"], ["serve"]):
        r = roost(*args, env={"ROOST_HOST": value, "ROOST_HOME": str(tmp_path)})
        assert r.returncode == 1, (args, r.stderr)
        assert r.stdout == "" and r.stderr.count("\n") == 1, (args, r.stderr)
        assert r.stderr.startswith(f"Error: ROOST_HOST={value!r} is not a valid address"), r.stderr
        assert "[scheme://]host[:port]" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "logs").exists()  # no server was started in the background


def test_bare_roost_prints_help_and_exits_0() -> None:
    r = roost(env={})
    helped = roost("--help", env={})
    assert r.returncode == 0 and r.stderr == ""
    assert helped.returncode == 0 and r.stdout == helped.stdout
    assert "Usage:" in r.stdout and "COMMAND [ARGS]..." in r.stdout and "serve" in r.stdout


def test_pull_piped_progress_has_no_repeated_line(tmp_path: Path) -> None:
    srv = start_server(tmp_path / "home")
    try:
        r = roost("pull", MODEL, env={"ROOST_HOST": srv.host, "ROOST_HOME": str(srv.home)},
                  timeout=240)
        assert r.returncode == 0, r.stderr
        lines = r.stderr.splitlines()
        assert len(lines) == len(set(lines)), r.stderr
        assert lines[0] == "pulling manifest" and lines[-1] == "success"
        assert "verifying sha256 digest" in lines and "\x1b" not in r.stderr
    finally:
        stop_server(srv)


@pytest.mark.parametrize(("typed", "expected"), [
    ("qwen2.5-coder", "qwen2.5-coder:0.5b"),
    ("qwen2.5-coder:latest", "qwen2.5-coder:0.5b"),
    ("qwen2.5-coder:7b", "qwen2.5-coder:0.5b"),
    ("Qwen2.5-Coder:7B", "qwen2.5-coder:0.5b"),
    ("library/qwen2.5-coder", "qwen2.5-coder:0.5b"),
    ("qwen2.5-cder:0.5b", "qwen2.5-coder:0.5b"),
    ("qwen2.5-cder", "qwen2.5-coder:0.5b"),
    ("qwen2.5", "qwen2.5-coder:0.5b"),
    ("gemma3", "gemma3:270m"),
    ("gemma3:1b", "gemma3:270m"),
    ("gema3:270m", "gemma3:270m"),
])
def test_close_names_suggests_the_catalog_name(typed: str, expected: str) -> None:
    assert close_names(typed)[0] == expected


@pytest.mark.parametrize("typed", ["llama3", "mistral:7b", "", "!!", "a/b/c/d",
                                   "registry.example.com/library/qwen2.5-coder"])
def test_close_names_offers_nothing_for_an_unrelated_name(typed: str) -> None:
    assert close_names(typed) == []


def test_close_names_never_offers_the_name_typed_and_keeps_the_limit() -> None:
    for entry in CATALOG:
        assert entry.name not in close_names(entry.name)
        assert entry.name not in close_names(entry.name.upper())
    assert close_names("qwen2.5-coder", limit=0) == []
    assert len(close_names("gemma3", limit=1)) == 1


def test_unknown_name_suggests_catalog_names(pulled: Server) -> None:
    r = subprocess.run([sys.executable, "-m", "roost", "run", "qwen2.5-coder", "hi"],
                       env=pulled.env(), capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and r.stderr.count("\n") == 1, r.stderr
    assert "not found" in r.stderr and "qwen2.5-coder:0.5b" in r.stderr


def test_serve_help_lists_every_setting() -> None:
    from roost import config

    r = subprocess.run([sys.executable, "-m", "roost", "serve", "--help"], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0
    for setting in config.SETTINGS:
        assert setting.name in r.stdout
