"""Resumable, shared registry pulls: a pull cut by kill -9 of the server or by a broken
connection picks up where it stopped, and pulls of one blob fetch it once.

The registry (tests/support/registry_server.py, 127.0.0.1) serves a 4 MiB GGUF slowly enough
that the kills fall mid-blob, and counts every byte it sends; the servers and the `roost pull`
are the real ones. Kill points are drawn with a fixed seed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import threading
import time
from pathlib import Path
from typing import Any

import httpx2 as httpx

from roost.models.store import RESUMABLE_FOR, Store
from tests.conftest import Server, roost_cli, start_server, stop_server
from tests.support.registry_server import RegistryServer, digest_of, gguf_weights
from tests.support.store_faults import kill_hard

SIZE = 4 << 20
RATE = 3 << 20  # bytes per second: a whole blob takes about 1.4 s
SEED = 20260
KILLS = 2


def blob_file(home: Path, data: bytes) -> Path:
    return home / "blobs" / digest_of(data).replace(":", "-")


def partial_of(home: Path, data: bytes) -> Path:
    return blob_file(home, data).with_name(blob_file(home, data).name + ".partial")


def pull_events(server: Server, name: str, stop_after: int | None = None) -> list[dict[str, Any]]:
    """POST /api/pull as a stream; with `stop_after`, hang up after that many progress events."""
    events: list[dict[str, Any]] = []
    with contextlib.suppress(httpx.TransportError), server.client(timeout=60) as c, \
            c.stream("POST", "/api/pull", json={"model": name, "insecure": True}) as r:
        for line in r.iter_lines():
            if line:
                events.append(json.loads(line))
                if stop_after is not None and sum("completed" in e for e in events) >= stop_after:
                    break
    return events


def wait_for(check: Any, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_kill_9_mid_pull_then_the_next_pull_resumes(tmp_path: Path) -> None:
    data = gguf_weights(SIZE, seed=1)
    rng = random.Random(SEED)
    home = tmp_path / "home"
    served: list[int] = []
    with RegistryServer(rate=RATE) as reg:
        reg.add_model("team", "slow", "v1", data)
        name = f"{reg.host}/team/slow:v1"
        for _ in range(KILLS):
            server = start_server(home)
            before = reg.served
            target = before + int(rng.uniform(0.15, 0.3) * SIZE)
            reader = threading.Thread(target=pull_events, args=(server, name), daemon=True)
            try:
                reader.start()
                wait_for(lambda t=target: reg.served >= t)  # type: ignore[misc]
                time.sleep(rng.uniform(0, 0.2))
            finally:
                kill_hard(server)
            reader.join(timeout=30)
            served.append(reg.served - before)
            kept = partial_of(home, data).read_bytes()
            assert kept and data.startswith(kept)  # what was kept is the blob's own beginning
        before = reg.served
        server = start_server(home)
        try:
            r = roost_cli(server, "pull", "--insecure", name)
            assert r.returncode == 0 and r.stderr.strip().endswith("success"), r.stderr
        finally:
            stop_server(server)
        served.append(reg.served - before)
    weights_total = sum(served)
    print(f"bytes served per attempt: {served}, total {weights_total} for a {len(data)}-byte blob")
    assert hashlib.sha256(blob_file(home, data).read_bytes()).digest().hex() == digest_of(data)[7:]
    assert not partial_of(home, data).exists()
    assert all(n < len(data) for n in served[1:]), served  # every resumed attempt fetched less
    assert weights_total < 2 * len(data), served
    resumes = [q for q in reg.requests if q.headers.get("Range")]
    assert resumes and all(q.headers.get("If-Range") == f'"{digest_of(data)}"' for q in resumes)


def test_a_cut_connection_is_an_error_and_the_next_pull_resumes(server: Server) -> None:
    data = gguf_weights(SIZE, seed=2)
    with RegistryServer(cut_after=SIZE // 2) as reg:
        reg.add_model("team", "cut", "v1", data)
        name = f"{reg.host}/team/cut:v1"
        r = roost_cli(server, "pull", "--insecure", name)
        assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
        last = r.stderr.strip().splitlines()[-1]
        assert last.startswith("Error: ") and "cut off" in last, last
        assert data.startswith(partial_of(server.home, data).read_bytes())
        assert not blob_file(server.home, data).exists()
        first = reg.served
        reg.cut_after = None
        r = roost_cli(server, "pull", "--insecure", name)
        assert r.returncode == 0, r.stderr
    again = reg.served - first
    print(f"first attempt {first} bytes (cut), resumed attempt {again} bytes")
    assert again <= len(data) - SIZE // 2 + (64 << 10)  # the rest only (the config's bytes aside)
    assert blob_file(server.home, data).stat().st_size == len(data)


def test_two_concurrent_pulls_fetch_the_blob_once(server: Server) -> None:
    data = gguf_weights(SIZE, seed=3)
    with RegistryServer(rate=RATE) as reg:
        reg.add_model("team", "twice", "v1", data)
        name = f"{reg.host}/team/twice:v1"
        results: list[list[dict[str, Any]]] = [[], []]

        def pull(i: int) -> None:
            results[i] = pull_events(server, name)

        threads = [threading.Thread(target=pull, args=(i,)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
    for events in results:
        assert events[-1] == {"status": "success"}, events[-3:]
        progress = [e for e in events if e.get("digest") == digest_of(data)]
        assert len(progress) >= 3 and progress[-1]["completed"] == len(data)  # each client saw it move
    blob_gets = [q for q in reg.requests if q.method == "GET" and digest_of(data) in q.path]
    assert len(blob_gets) == 1 and reg.served <= len(data) + 64, reg.served


def test_two_servers_on_one_home_fetch_the_blob_once(tmp_path: Path) -> None:
    """Across processes the partial's lock is the per-digest lock: the second waits, then
    finds the blob whole."""
    data = gguf_weights(SIZE, seed=4)
    home = tmp_path / "home"
    servers: list[Server] = []
    starts = [threading.Thread(target=lambda: servers.append(start_server(home))) for _ in range(2)]
    for t in starts:
        t.start()
    for t in starts:
        t.join(timeout=60)
    try:
        assert len(servers) == 2
        with RegistryServer(rate=RATE) as reg:
            reg.add_model("team", "shared", "v1", data)
            name = f"{reg.host}/team/shared:v1"
            results: list[list[dict[str, Any]]] = [[], []]
            threads = [threading.Thread(target=lambda i=i: results.__setitem__(
                i, pull_events(servers[i], name))) for i in range(2)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(timeout=60)
    finally:
        for s in servers:
            stop_server(s)
    assert all(events[-1] == {"status": "success"} for events in results), results
    assert reg.served <= len(data) + 64, reg.served


def test_the_last_client_leaving_stops_the_download(server: Server) -> None:
    data = gguf_weights(SIZE, seed=5)
    with RegistryServer(rate=SIZE // 4) as reg:  # 4 s for the blob
        reg.add_model("team", "left", "v1", data)
        name = f"{reg.host}/team/left:v1"
        events = pull_events(server, name, stop_after=4)
        assert events and "error" not in events[-1]
        time.sleep(1.0)  # the server notices the hang-up and cancels
        stopped_at = reg.served
        time.sleep(1.0)
        assert reg.served == stopped_at < len(data), (reg.served, stopped_at)
        assert data.startswith(partial_of(server.home, data).read_bytes())
        reg.rate = None
        r = roost_cli(server, "pull", "--insecure", name)
        assert r.returncode == 0, r.stderr
    assert reg.served < 2 * len(data)



def test_only_bytes_known_to_be_synced_count_on_resume(tmp_path: Path) -> None:
    """After a power loss a partial may be longer than what reached the disk: the length its
    writer recorded after an fsync is where the resume starts (bytes after it are dropped)."""
    data = random.Random(6).randbytes(300_000)
    store = Store(tmp_path)
    partial = partial_of(tmp_path, data)
    partial.parent.mkdir(parents=True)
    partial.write_bytes(data[:200_000] + b"\0" * 50_000)  # the tail never made it to the disk
    os.setxattr(partial, "user.roost.synced", b"200000")
    asked: list[int] = []

    def open_stream(offset: int) -> tuple[list[bytes], int]:
        asked.append(offset)
        return [data[offset:]], offset

    store.write_blob_resumable(open_stream, digest_of(data), len(data))
    assert asked == [200_000]
    assert blob_file(tmp_path, data).read_bytes() == data and not partial.exists()


def test_a_source_that_starts_over_is_written_from_byte_0(tmp_path: Path) -> None:
    data = random.Random(7).randbytes(100_000)
    store = Store(tmp_path)
    partial = partial_of(tmp_path, data)
    partial.parent.mkdir(parents=True)
    partial.write_bytes(b"x" * 40_000)  # not even the blob's bytes: a 200 replaces them all
    store.write_blob_resumable(lambda offset: ([data[:10], data[10:]], 0), digest_of(data),
                               len(data))
    assert blob_file(tmp_path, data).read_bytes() == data


def test_a_dead_downloads_partial_survives_a_sweep_and_junk_does_not(tmp_path: Path) -> None:
    data = b"some blob"
    store = Store(tmp_path)
    store.blobs.mkdir()
    kept = partial_of(tmp_path, data)
    kept.write_bytes(data[:4])
    junk = store.blobs / (blob_file(tmp_path, data).name + "-x1y2.partial")
    junk.write_bytes(b"half")
    stale = store.blobs / ("sha256-" + "e" * 64 + ".partial")
    stale.write_bytes(b"old")
    week_ago = time.time() - RESUMABLE_FOR - 60
    os.utime(stale, (week_ago, week_ago))
    store.prune()
    assert kept.exists() and not junk.exists() and not stale.exists()
    store.write_blob([data], digest_of(data), len(data))  # whole now: its partial is moot
    assert not kept.exists()
