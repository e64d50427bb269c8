"""A blob upload onto a full disk: one clear error, promptly, and nothing half-written.

ROOST_HOME is a 4 MiB tmpfs (a real ENOSPC) where the test may mount one (root, as in CI);
elsewhere the server runs with a 4 MiB file-size limit (EFBIG), which fails the same writes.
"""

from __future__ import annotations

import hashlib
import os
import resource
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2 as httpx
import pytest

from tests.conftest import Server, free_port

LIMIT = 4 << 20


def _mount_tmpfs(path: Path) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={LIMIT}", "tmpfs", str(path)],
                          capture_output=True)
    return done.returncode == 0


@pytest.fixture()
def full_disk(tmp_path: Path) -> Iterator[Server]:
    home = tmp_path / "home"
    mounted = _mount_tmpfs(home)

    def limit() -> None:
        if not mounted:
            resource.setrlimit(resource.RLIMIT_FSIZE, (LIMIT, LIMIT))

    port = free_port()
    log = tmp_path / "server.log"
    env = {**os.environ, "ROOST_HOST": f"127.0.0.1:{port}", "ROOST_HOME": str(home)}
    with log.open("ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "roost", "serve"], env=env, stdout=out,
                                stderr=out, stdin=subprocess.DEVNULL, preexec_fn=limit)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                if httpx.get(f"{url}/api/version", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        yield Server(url, f"127.0.0.1:{port}", home, proc, log)
    finally:
        proc.terminate()
        proc.wait(timeout=15)
        if mounted:
            subprocess.run(["umount", str(home)], check=False)


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
        assert time.monotonic() - started < 10
        blobs = sorted(p.name for p in (full_disk.home / "blobs").iterdir())
        assert blobs == [_digest(small)]  # no partial file, the earlier blob intact
        assert (full_disk.home / "blobs" / _digest(small)).read_bytes() == small
        assert c.head(f"/api/blobs/{_digest(big)}").status_code == 404
        assert c.get("/api/tags").status_code == 200  # the server goes on
