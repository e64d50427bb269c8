"""Helpers for the runner tests (side work, decode failures, a killed server): streams timed
piece by piece, and runner processes found through /proc."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2 as httpx

RUNNER_MODULE = "roost.scheduler.runner_main"


@dataclass
class TimedStream:
    """When each piece of a streamed answer arrived (time.monotonic), and its text."""

    times: list[float] = field(default_factory=list)
    text: str = ""
    last: dict[str, object] = field(default_factory=dict)

    def gaps(self, start: float = 0.0, end: float = float("inf")) -> list[float]:
        """Seconds between consecutive pieces, for the pieces that arrived in [start, end]."""
        inside = [t for t in self.times if start <= t <= end]
        return [b - a for a, b in zip(inside, inside[1:], strict=False)]


def timed_stream(client: httpx.Client, path: str, body: dict[str, object],
                 on_piece: Callable[[int], bool] | None = None) -> TimedStream:
    """Stream `body` to `path`; `on_piece(n)` after the n-th piece returns True to hang up."""
    out = TimedStream()
    with client.stream("POST", path, json=body) as r:
        assert r.status_code == 200, r.read()
        for line in r.iter_lines():
            if not line:
                continue
            msg = json.loads(line)
            if msg.get("done") or "error" in msg:
                out.last = msg
                break
            out.times.append(time.monotonic())
            out.text += msg.get("response") or (msg.get("message") or {}).get("content", "")
            if on_piece is not None and on_piece(len(out.times)):
                break
    return out


def runner_processes(needle: str) -> list[int]:
    """Pids of live runner processes whose command line mentions `needle` (e.g. a ROOST_HOME)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue  # gone meanwhile
        if RUNNER_MODULE in cmdline and needle in cmdline and state != "Z":
            pids.append(int(entry.name))
    return pids


def children(pid: int) -> list[int]:
    """The pids of `pid`'s children (from /proc/PID/task/*/children)."""
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out += [int(p) for p in (task / "children").read_text().split()]
        except OSError:
            continue
    return out


def wait_gone(pid: int, timeout: float) -> float | None:
    """The moment (time.monotonic) `pid` was seen not running (gone, or a zombie), polling
    every 10 ms; None if it still runs after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _running(pid):
            return time.monotonic()
        time.sleep(0.01)
    return None


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


class RunnerProcess:
    """A real runner process (roost.scheduler.runner_main) on the real model, driven over its
    socket by the test as the server would: for what the HTTP API does not show (how the
    answer is split into messages, a cancel racing a request's preparation)."""

    def __init__(self, weights: Path, num_ctx: int = 2048, num_parallel: int = 2) -> None:
        ours, theirs = socket.socketpair()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", RUNNER_MODULE, "--fd", str(theirs.fileno()),
             "--model", str(weights), "--num-ctx", str(num_ctx),
             "--num-parallel", str(num_parallel), "--parent-pid", str(os.getpid())],
            pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL)
        theirs.close()
        self.sock = ours
        self.sock.settimeout(120)
        self._file = ours.makefile("rb")
        while (msg := self.receive())["op"] == "hello":
            pass
        assert msg["op"] == "ready", msg

    def send(self, *messages: dict[str, Any]) -> None:
        """All in one write, so the runner reads them together."""
        self.sock.sendall(b"".join(json.dumps(m).encode() + b"\n" for m in messages))

    def receive(self) -> dict[str, Any]:
        line = self._file.readline()
        assert line, "the runner closed its socket"
        return dict(json.loads(line))

    def until(self, rid: int, *ops: str) -> list[dict[str, Any]]:
        """Every message up to and including the first for `rid` whose op is one of `ops`."""
        seen = []
        while True:
            seen.append(msg := self.receive())
            if msg.get("id") == rid and msg["op"] in ops:
                return seen

    def close(self) -> None:
        self._file.close()
        self.sock.close()  # the runner's cue to exit
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def weights(home: Path, model: str = "qwen2.5-coder:0.5b") -> Path:
    """The model's GGUF file in a store (a shared store holds other tests' blobs too)."""
    from roost.models.resolve import resolve
    from roost.models.store import Store

    return resolve(Store(home), model).weights
