"""A full disk under a blob upload or a pull: one clear error, promptly, and nothing half-written.

ROOST_HOME is a small tmpfs (a real ENOSPC) where the test may mount one (root, as in CI);
elsewhere the server runs with a file-size limit of the same size (EFBIG), which fails the
same writes. The pulls are real: the catalog's qwen2.5-coder:0.5b (491 MB, far more than the
disk holds) from the installed part packages, and the same model from a second real Roost
server (the session's `pulled`) acting as a registry.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2 as httpx
import pytest

from tests.conftest import MODEL, Server
from tests.support import write_thinking_gguf
from tests.support.store_faults import StoreInspector, server_on, small_disk

UPLOAD_DISK = 4 << 20
PULL_DISK = 64 << 20


@pytest.fixture()
def full_disk(tmp_path: Path) -> Iterator[Server]:
    home = tmp_path / "home"
    with small_disk(home, UPLOAD_DISK) as limit, server_on(home, limit, tmp_path / "server.log") as srv:
        yield srv


@pytest.fixture()
def small_home(tmp_path: Path) -> Iterator[Server]:
    """A server on a 64 MiB disk holding one small created model, `tiny:1`."""
    home = tmp_path / "home"
    with small_disk(home, PULL_DISK) as limit, server_on(home, limit, tmp_path / "server.log") as srv:
        data = write_thinking_gguf(tmp_path / "tiny.gguf").read_bytes()
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        with srv.client() as c:
            assert c.post(f"/api/blobs/{digest}", content=data).status_code == 201
            r = c.post("/api/create", json={"model": "tiny:1", "files": {"tiny.gguf": digest},
                                            "stream": False})
            assert r.status_code == 200, r.text
        yield srv


def _digest(data: bytes) -> str:
    return "sha256-" + hashlib.sha256(data).hexdigest()


def test_upload_onto_a_full_disk_fails_cleanly(full_disk: Server) -> None:
    small = b"a small blob that fits\n"
    big = os.urandom(16 << 20)
    with httpx.Client(base_url=full_disk.url, timeout=30) as c:
        assert c.post(f"/api/blobs/{_digest(small)}", content=small).status_code == 201
        started = time.monotonic()
        r = c.post(f"/api/blobs/{_digest(big)}", content=big)
        assert r.status_code == 507, r.text
        assert "could not store the blob" in r.json()["error"]
        assert "disk is full" in r.json()["error"]
        assert time.monotonic() - started < 10
        blobs = sorted(p.name for p in (full_disk.home / "blobs").iterdir())
        assert blobs == [_digest(small)]  # no partial file, the earlier blob intact
        assert (full_disk.home / "blobs" / _digest(small)).read_bytes() == small
        assert c.head(f"/api/blobs/{_digest(big)}").status_code == 404
        assert c.get("/api/tags").status_code == 200  # the server goes on


@pytest.mark.parametrize("source", ["catalog", "registry"])
def test_pull_onto_a_full_disk_fails_cleanly(small_home: Server, pulled: Server,
                                             source: str) -> None:
    name = MODEL if source == "catalog" else f"{pulled.host}/library/{MODEL}"
    inspector = StoreInspector(small_home.home)
    with small_home.client() as c:
        before = c.get("/api/tags").json()
        files_before = inspector.check()
        with c.stream("POST", "/api/pull", json={"model": name, "insecure": True}) as r:
            events = [json.loads(line) for line in r.iter_lines() if line]
        errors = [e["error"] for e in events if "error" in e]
        assert errors == [events[-1]["error"]], events[-3:]  # one error, the last line
        assert "the disk is full" in errors[0], errors
        print(f"{source} pull, stream: {errors[0]}")
        cli = subprocess.run([sys.executable, "-m", "roost", "pull", "--insecure", name],
                             env=small_home.env(), capture_output=True, text=True, timeout=120)
        _error_ends_progress(cli, "the disk is full")
        print(f"{source} pull, CLI: {cli.stderr.strip().splitlines()[-1]}")
        assert c.get("/api/tags").json() == before
    after = inspector.check()
    assert not after.problems and not after.temporaries, after  # nothing half-written
    assert (after.blobs, after.manifests) == (files_before.blobs, files_before.manifests)


def _error_ends_progress(r: subprocess.CompletedProcess[str], words: str) -> None:
    """`roost pull` writes its progress lines to stderr, as `ollama pull` does; the error is
    one `Error: ...` line after them, exit 1, never a traceback."""
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
    assert lines[-1].startswith("Error: ") and words in lines[-1], r.stderr
    assert sum(line.startswith("Error") for line in lines) == 1, r.stderr
    assert "Traceback" not in r.stderr, r.stderr
