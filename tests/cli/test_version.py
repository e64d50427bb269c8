"""`roost -v` as Ollama's `-v`: the running server's version, or a warning that none answers;
and `roost start`, Ollama's alias (and Cortex's name) for `serve`."""

from __future__ import annotations

import socket
import subprocess

import pytest

from roost import __version__
from tests.cli.test_run import ROOST, roost
from tests.conftest import Server, free_port
from tests.support import search_server


def test_version_asks_the_running_server(server: Server) -> None:
    r = roost(server, "-v")
    assert r.returncode == 0 and r.stdout == f"roost version is {__version__}\n", r.stdout


def test_version_without_a_server_warns_and_starts_none(server: Server) -> None:
    port = free_port()
    env = {**server.env(), "ROOST_HOST": f"127.0.0.1:{port}"}
    r = subprocess.run([*ROOST, "--version"], env=env, text=True, capture_output=True, timeout=60)
    assert r.returncode == 0
    assert r.stdout.splitlines() == ["Warning: could not connect to a running Roost instance",
                                     f"Warning: client version is {__version__}"]
    with pytest.raises(OSError):  # nothing was started to answer it
        socket.create_connection(("127.0.0.1", port), timeout=2).close()


def test_start_is_serve(server: Server) -> None:
    r = roost(server, "start", "--help")
    assert r.returncode == 0 and "Start the Roost server." in r.stdout


def test_version_does_not_take_an_ollama_server_for_roost(server: Server) -> None:
    """Ollama's default port is Roost's: its /api/version has no `"server": "roost"`."""
    with search_server({"version": "0.12.0"}) as (url, _):
        env = {**server.env(), "ROOST_HOST": url.removeprefix("http://")}
        r = subprocess.run([*ROOST, "-v"], env=env, text=True, capture_output=True, timeout=60)
    assert r.returncode == 0 and "0.12.0" not in r.stdout, r.stdout
    assert r.stdout.startswith("Warning: could not connect to a running Roost instance")
