"""Make sure a Roost server answers at ROOST_HOST, starting one in the background if not.

The port itself is the lock: if two CLIs race to start a server, the second server fails to
bind and exits, and both CLIs find the first one answering.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

from roost import config
from roost.api.client import Client, ConnectError, ResponseError

START_TIMEOUT = 60.0


class NotRoost(RuntimeError):
    """Something else (an Ollama server, say) answers at ROOST_HOST."""


def ensure_server(client: Client) -> None:
    try:
        _check(client)
        return
    except ConnectError:
        pass
    host, port = config.host_port()
    if host not in ("127.0.0.1", "localhost", "::1", "0.0.0.0", "::"):
        raise ConnectError(f"no Roost server answers at {client.base_url}")
    proc = _spawn()
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        try:
            _check(client)
            return
        except ConnectError:
            if proc.poll() is not None and proc.returncode != 0:
                time.sleep(0.2)  # maybe another CLI's server won the port; look once more
                try:
                    _check(client)
                    return
                except ConnectError:
                    break
            time.sleep(0.1)
    log = config.home() / "logs" / "server.log"
    raise ConnectError(f"could not start the Roost server at {client.base_url} (see {log})")


def server_version(client: Client) -> str:
    """The version of the Roost server at the client's address; ConnectError if nothing
    answers there, NotRoost if something else does (Ollama's default port is the same)."""
    try:
        info = client.version()
    except (ResponseError, ValueError):  # an error status, or an answer that is not JSON
        info = {}
    if info.get("server") != "roost":
        raise NotRoost(
            f"the server at {client.base_url} is not Roost (an Ollama server?); "
            "set ROOST_HOST to another address, e.g. ROOST_HOST=127.0.0.1:11435"
        )
    return str(info.get("version") or "")


def _check(client: Client) -> None:
    server_version(client)


def _spawn() -> subprocess.Popen[bytes]:
    logs = config.home() / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    log = open(logs / "server.log", "ab")  # noqa: SIM115 - handed to the child
    try:
        return subprocess.Popen(
            [sys.executable, "-m", "roost", "serve"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log,
            start_new_session=True, env=os.environ.copy(),
        )
    finally:
        log.close()
