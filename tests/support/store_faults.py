"""Helpers for the store's fault tests: look at a ROOST_HOME's files directly, kill a server
mid-pull, run a server on a small disk.

The checks read the store's files themselves, not the server's answers, because after a
kill -9 nothing else is left to ask: a blob under its final name must hash to that name, a
manifest must parse and name only blobs that are there with its sizes, and anything else in
blobs/ must be a temporary file (`*.partial`) that no reader would take for a blob.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import resource
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2 as httpx

from tests.conftest import Server, free_port

FINAL_BLOB = re.compile(r"sha256-[0-9a-f]{64}")


@dataclass
class StoreState:
    """What one look at a store found; `problems` empty means whole."""

    blobs: list[str] = field(default_factory=list)
    temporaries: list[str] = field(default_factory=list)
    manifests: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


class StoreInspector:
    """Checks a home's store; hashes each distinct final blob once (hashing 0.5 GB is slow)."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self._hashes: dict[tuple[str, int, int, int], str] = {}

    def check(self) -> StoreState:
        state = StoreState()
        blobs = self.home / "blobs"
        for path in sorted(blobs.iterdir()) if blobs.is_dir() else ():
            if FINAL_BLOB.fullmatch(path.name):
                state.blobs.append(path.name)
                if self._sha256(path) != path.name[len("sha256-"):]:
                    state.problems.append(f"{path.name} does not hash to its name")
            elif path.name.endswith(".partial"):
                state.temporaries.append(path.name)
            else:
                state.problems.append(f"unexpected file in blobs/: {path.name}")
        for path in sorted((self.home / "manifests").glob("*/*/*/*")):
            if path.is_file() and not path.name.startswith("."):
                state.manifests.append(str(path.relative_to(self.home / "manifests")))
                state.problems += _manifest_problems(path, blobs)
        return state

    def _sha256(self, path: Path) -> str:
        st = path.stat()
        key = (path.name, st.st_ino, st.st_size, st.st_mtime_ns)
        if key not in self._hashes:
            with path.open("rb") as src:
                self._hashes[key] = hashlib.file_digest(src, "sha256").hexdigest()
        return self._hashes[key]


def _manifest_problems(path: Path, blobs: Path) -> list[str]:
    try:
        doc = json.loads(path.read_bytes())
        layers = [doc["config"], *doc.get("layers", [])]
    except (ValueError, KeyError, TypeError) as exc:
        return [f"manifest {path} does not parse: {exc}"]
    problems = []
    for layer in layers:
        blob = blobs / str(layer["digest"]).replace(":", "-", 1)
        if not blob.is_file():
            problems.append(f"manifest {path.name} names a missing blob {blob.name}")
        elif blob.stat().st_size != layer["size"]:
            problems.append(f"manifest {path.name}: {blob.name} has the wrong size")
    return problems


@dataclass
class KilledPull:
    """One pull cut by kill -9: when, and the last progress event the client had seen."""

    delay: float  # seconds from the request to the kill
    last_event: dict[str, Any]
    events: int

    @property
    def stage(self) -> str:
        """Where the pull was: the status, and how far into the blob as a fraction."""
        event = self.last_event
        if event.get("total"):
            return f"{event['status'].split()[0]} {event['completed'] / event['total']:.0%}"
        return str(event.get("status", "before the first event"))


BIG = 1 << 20  # progress on a layer this size or more is progress on the weights


def kill_during_pull(server: Server, model: str, at: float, jitter: float) -> KilledPull:
    """Pull `model`, and kill -9 the server once a fraction `at` of the weights is written
    (at >= 1: once they all are), plus a random `jitter` seconds so the kill does not fall
    on a progress report. Positions, not clock times, because on a loaded machine a pull's
    duration varies twofold and a clock time would often miss the end of the pull."""
    events: list[dict[str, Any]] = []
    reached = threading.Event()

    def read() -> None:
        with contextlib.suppress(httpx.TransportError), server.client(timeout=60) as c, \
                c.stream("POST", "/api/pull", json={"model": model, "insecure": True}) as r:
            for line in r.iter_lines():
                if line:
                    events.append(event := json.loads(line))
                    if _reached(event, at):
                        reached.set()
        reached.set()  # the pull ended (done or failed) before the position: kill anyway

    sent = time.monotonic()
    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reached.wait(timeout=60)
    time.sleep(jitter)
    server.proc.kill()
    delay = time.monotonic() - sent
    server.proc.wait(timeout=30)
    reader.join(timeout=30)
    return KilledPull(delay, events[-1] if events else {}, len(events))


def _reached(event: dict[str, Any], at: float) -> bool:
    if at <= 0:
        return True
    total, done = event.get("total") or 0, event.get("completed") or 0
    return total >= BIG and done >= min(at, 1.0) * total


def delete_all_models(server: Server) -> list[str]:
    """Delete every model the server lists, so the next pull has all its bytes to write."""
    with server.client() as c:
        names = [m["name"] for m in c.get("/api/tags").json()["models"]]
        for name in names:
            assert c.request("DELETE", "/api/delete", json={"model": name}).status_code == 200
    return names


def kill_hard(server: Server) -> None:
    """kill -9, whatever state the server is in; for `finally` blocks."""
    if server.proc.poll() is None:
        server.proc.kill()
    server.proc.wait(timeout=30)


@contextlib.contextmanager
def small_disk(path: Path, size: int) -> Iterator[Callable[[], None] | None]:
    """`path` on a tmpfs of `size` bytes (a real ENOSPC) where mounting is allowed (root, CI);
    elsewhere yields a preexec_fn that puts a `size` file-size limit (EFBIG) on the server."""
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                          capture_output=True)
    if done.returncode != 0:
        yield lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))
        return
    try:
        yield None
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


@contextlib.contextmanager
def server_on(home: Path, preexec: Callable[[], None] | None, log: Path) -> Iterator[Server]:
    """A real `roost serve` on `home`, optionally with `preexec` (a file-size limit); its log
    lives outside `home` so a full disk cannot silence it. Stopped however the test ends."""
    port = free_port()
    host = f"127.0.0.1:{port}"
    env = {**os.environ, "ROOST_HOST": host, "ROOST_HOME": str(home)}
    with log.open("ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "roost", "serve"], env=env, stdout=out,
                                stderr=out, stdin=subprocess.DEVNULL, preexec_fn=preexec)
    server = Server(f"http://{host}", host, home, proc, log)
    try:
        _wait_ready(server)
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            kill_hard(server)


def _wait_ready(server: Server) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and server.proc.poll() is None:
        try:
            if httpx.get(f"{server.url}/api/version", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.1)
    raise RuntimeError(f"server did not start:\n{server.log.read_text()}")
