"""A registry that cuts a blob off mid-way: the pull is an error line and exit 1, no blob or
model kept (only the partial download, for the next pull to resume).

The registry is a small HTTP server this test starts on 127.0.0.1; the client is the real
`roost pull` against a real Roost server.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import subprocess
import sys
import threading
from collections.abc import Iterator

import pytest

from tests.conftest import Server

BLOB = bytes(range(256)) * 4096  # 1 MiB
CONFIG = b'{"model_format":"gguf"}'


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


MANIFEST = json.dumps({
    "schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
    "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
               "digest": _digest(CONFIG), "size": len(CONFIG)},
    "layers": [{"mediaType": "application/vnd.ollama.image.model", "digest": _digest(BLOB),
                "size": len(BLOB)}],
}).encode()


class CuttingRegistry(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        if self.path.endswith("/manifests/latest"):
            self._send(MANIFEST, len(MANIFEST))
        elif self.path.endswith(_digest(CONFIG)):
            self._send(CONFIG, len(CONFIG))
        elif self.path.endswith(_digest(BLOB)):
            self._send(BLOB[: len(BLOB) // 2], len(BLOB))  # promises all, sends half
            self.close_connection = True
        else:
            self.send_error(404)

    def _send(self, body: bytes, length: int) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(length))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture()
def registry() -> Iterator[str]:
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), CuttingRegistry)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        yield f"127.0.0.1:{srv.server_port}"
    finally:
        srv.shutdown()


def test_a_cut_off_pull_fails_and_keeps_nothing(server: Server, registry: str) -> None:
    name = f"{registry}/team/cut:latest"
    r = subprocess.run([sys.executable, "-m", "roost", "pull", "--insecure", name], env=server.env(),
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert r.stderr.strip().splitlines()[-1].startswith("Error: ") and "cut off" in r.stderr
    assert "Traceback" not in r.stderr
    assert not (server.home / "blobs" / _digest(BLOB).replace(":", "-")).exists()
    kept = server.home / "blobs" / (_digest(BLOB).replace(":", "-") + ".partial")
    assert BLOB.startswith(kept.read_bytes())  # only the blob's own first bytes, kept to resume
    kept.unlink()  # the session server's store, left as found for the tests that follow
    with server.client() as c:
        assert name not in [m["name"] for m in c.get("/api/tags").json()["models"]]
