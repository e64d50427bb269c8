"""kill -9 while threads and messages are written: the database passes PRAGMA integrity_check
and holds every acknowledged write; a write in flight is there whole or not at all.

Fifty kills fall on a child process writing through roost.threads.store (fast to start, so
fifty kills take seconds), and a few on a real `roost serve` written to through Cortex's
/v1/threads API by two clients at once. A write counts as acknowledged only once the store's
call (or the HTTP request) returned. One database file takes every kill in turn, so damage
left by one kill would show at the next check.
"""

from __future__ import annotations

import hashlib
import os
import random
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx2 as httpx

from roost.threads.store import Store
from tests.conftest import Server, start_server
from tests.support.store_faults import kill_hard

REPO = Path(__file__).resolve().parents[2]
KILLS = 50
SERVER_KILLS = 5
SEED = 4242


@dataclass
class Ledger:
    """What was acknowledged, and what was in flight when the kill fell."""

    threads: set[str] = field(default_factory=set)
    contents: dict[str, tuple[str, str]] = field(default_factory=dict)  # message -> thread, sha
    pending: list[list[str]] = field(default_factory=list)  # `try` lines with no `ok` yet
    landed: int = 0  # writes in flight at a kill found whole in the database
    dropped: int = 0  # writes in flight at a kill found absent (their transaction rolled back)

    def record(self, line: str) -> None:
        word, kind, *rest = line.split()
        if word == "try":
            self.pending.append([kind, *rest])
            return
        self.pending.remove(_tried(kind, rest))
        if kind == "thread":
            self.threads.add(rest[0])
        else:
            self.contents[rest[1]] = (rest[0], rest[2])

    def check(self, path: Path) -> list[str]:
        """Problems in the database at `path`; settles the writes that were in flight."""
        with sqlite3.connect(path) as db:
            problems = [f"integrity_check: {row[0]}" for row in db.execute("PRAGMA integrity_check")
                        if row[0] != "ok"]
            problems += [f"foreign key: {row}" for row in db.execute("PRAGMA foreign_key_check")]
            if not db.execute("SELECT 1 FROM sqlite_master WHERE name = 'messages'").fetchone():
                return problems + _killed_in_migrations(self)
            threads = {row[0] for row in db.execute("SELECT id FROM threads")}
            stored = {m: (t, _sha(c)) for m, t, c in
                      db.execute("SELECT id, thread_id, content FROM messages")}
        problems += [f"acknowledged thread {t} is missing" for t in self.threads - threads]
        for extra in threads - self.threads:
            problems += self._settle(["thread"], extra)
        for message, (thread, sha) in self.contents.items():
            if message not in stored:
                problems.append(f"acknowledged message {message} is missing")
            elif stored[message] == (thread, sha):
                continue
            elif ["edit", thread, message, stored[message][1]] in self.pending:
                self.pending.remove(["edit", thread, message, stored[message][1]])
                self.contents[message] = stored[message]
                self.landed += 1
            else:
                problems.append(f"message {message} is neither its acknowledged content "
                                "nor the edit in flight")
        for extra in stored.keys() - self.contents.keys():
            problems += self._settle(["message", *stored[extra]], extra)
        self.dropped += len(self.pending)
        self.pending.clear()
        return problems

    def _settle(self, tried: list[str], new_id: str) -> list[str]:
        """A row nobody acknowledged must be a write that was in flight, whole."""
        if tried not in self.pending:
            return [f"{tried[0]} {new_id} was never written"]
        self.pending.remove(tried)
        self.landed += 1
        if tried[0] == "thread":
            self.threads.add(new_id)
        else:
            self.contents[new_id] = (tried[1], tried[2])
        return []


def _killed_in_migrations(ledger: Ledger) -> list[str]:
    """No tables yet: the first store was killed before its migrations committed, which is
    whole only if nothing had been acknowledged."""
    if ledger.threads or ledger.contents:
        return ["the tables are gone"]
    ledger.pending.clear()
    return []


def _tried(kind: str, rest: list[str]) -> list[str]:
    """The `try` line an `ok` line answers: the same, less the id the store chose."""
    if kind == "thread":
        return ["thread"]
    if kind == "message":
        return ["message", rest[0], rest[2]]
    return ["edit", *rest]


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _run_writer(db: Path, seed: int, delay: float, from_start: bool) -> list[str]:
    """Start a writer, kill -9 it `delay` seconds after it started (or after it was ready:
    the store opened), and return every whole line it printed."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)}
    proc = subprocess.Popen([sys.executable, "-m", "tests.support.store_faults_writer", str(db),
                             str(seed)], stdout=subprocess.PIPE, env=env, cwd=REPO)
    assert proc.stdout is not None
    lines: list[str] = []
    ready = threading.Event()

    def read() -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            if raw.endswith(b"\n"):  # a line cut by the kill acknowledges nothing
                lines.append(raw.decode().strip())
                ready.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        if not from_start:
            assert ready.wait(timeout=30), "the writer never opened the store"
        time.sleep(delay)
    finally:
        proc.kill()
        proc.wait(timeout=30)
        reader.join(timeout=30)
    return [line for line in lines if line != "ready"]


def test_kill_9_during_thread_writes_keeps_every_acknowledged_message(tmp_path: Path) -> None:
    db = tmp_path / "roost.db"
    ledger = Ledger()
    rng = random.Random(SEED)
    started = time.monotonic()
    writes = 0
    for i in range(KILLS):
        from_start = i % 10 == 0  # some kills fall in start-up and on the first, the migrations
        lines = _run_writer(db, SEED + i, rng.uniform(0, 0.3), from_start)
        for line in lines:
            ledger.record(line)
        writes += sum(line.startswith("ok") for line in lines)
        in_flight = [" ".join(p[:1]) for p in ledger.pending]
        problems = ledger.check(db) if db.exists() else []
        assert not problems, (i, problems)
        print(f"kill {i + 1:2d}: {len(lines)} lines, in flight {in_flight or 'nothing'}")
    print(f"{KILLS} kills, {writes} acknowledged writes, {len(ledger.contents)} messages, "
          f"in flight at a kill: {ledger.landed} found whole, {ledger.dropped} absent; "
          f"{time.monotonic() - started:.1f}s")
    assert len(ledger.contents) > KILLS  # the kills fell among writes, not before them
    store = Store(db)  # and the store opens it and goes on
    thread = next(iter(ledger.threads))
    store.add_message(thread, "user", "after the kills")


def test_kill_9_of_the_server_during_thread_writes(tmp_path: Path) -> None:
    home = tmp_path / "home"
    ledger = Ledger()
    rng = random.Random(SEED)
    for i in range(SERVER_KILLS):
        server = start_server(home)
        try:
            posted = _post_until_killed(server, ledger, rng.uniform(0.2, 1.0))
        finally:
            kill_hard(server)
        problems = ledger.check(home / "roost.db")
        assert not problems, (i, problems)
        print(f"server kill {i + 1}: {posted} acknowledged messages; in flight so far: "
              f"{ledger.landed} found whole, {ledger.dropped} absent")
    assert len(ledger.contents) > SERVER_KILLS


def _post_until_killed(server: Server, ledger: Ledger, delay: float) -> int:
    """Two clients post messages to one new thread until the server is killed `delay`
    seconds after the first acknowledgement."""
    with server.client(timeout=30) as c:
        thread = c.post("/v1/threads", json={"title": "kill"}).json()["id"]
    ledger.threads.add(thread)
    acked = threading.Event()
    lock = threading.Lock()
    count = [0]

    def client(n: int) -> None:
        with httpx.Client(base_url=server.url, timeout=30) as c:
            for k in range(10_000):
                text = f"client {n} message {k} " + "x" * (k * 97 % 6000)
                with lock:
                    ledger.pending.append(["message", thread, _sha(text)])
                try:
                    r = c.post(f"/v1/threads/{thread}/messages",
                               json={"role": "user", "content": text})
                except httpx.TransportError:
                    return  # killed: this one stays pending
                assert r.status_code == 200, r.text
                with lock:
                    ledger.record(f"ok message {thread} {r.json()['id']} {_sha(text)}")
                    count[0] += 1
                acked.set()

    workers = [threading.Thread(target=client, args=(n,), daemon=True) for n in range(2)]
    _run_then_kill(workers, acked, delay, server.proc.kill)
    return count[0]


def _run_then_kill(workers: list[threading.Thread], acked: threading.Event, delay: float,
                   kill: Callable[[], None]) -> None:
    for worker in workers:
        worker.start()
    try:
        assert acked.wait(timeout=30), "no message was acknowledged"
        time.sleep(delay)
    finally:
        kill()
        for worker in workers:
            worker.join(timeout=30)
