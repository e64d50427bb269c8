"""An Ollama-protocol registry on 127.0.0.1 for pull tests: real HTTP, every knob a test needs.

It serves manifests and blobs under `/v2/{ns}/{model}/...` and can
- demand a token (`token=`): a request without `Authorization: Bearer <token>` gets a 401 whose
  `WWW-Authenticate` names a realm on this server, or on `realm_host` (another host to refuse),
  and `/token` hands out `issued_token` (the right one unless a test wants a refusal);
- send blob GETs elsewhere (`storage=`, a second `RegistryServer` reached as `localhost` while
  the registry is reached as `127.0.0.1`, so the hop crosses hosts), as Ollama's CDN does;
- honour `Range` (206 with Content-Range; `If-Range` compared with the blob's ETag);
- serve slowly (`rate`, bytes per second) and cut a response after `cut_after` bytes;
- count every blob byte it sent (`served`) and log each request's method, path and headers.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import random
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

MANIFEST_TYPE = "application/vnd.docker.distribution.manifest.v2+json"
MODEL_TYPE = "application/vnd.ollama.image.model"
CONFIG_TYPE = "application/vnd.docker.container.image.v1+json"
_RANGE = re.compile(r"^bytes=(\d+)-(\d*)$")
_BLOB = re.compile(r"/blobs/(sha256:[0-9a-f]{64})$")
_MANIFEST = re.compile(r"^/v2/([^/]+)/([^/]+)/manifests/([^/]+)$")


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def gguf_weights(size: int, seed: int = 0) -> bytes:
    """A structurally sound GGUF of about `size` bytes (one F32 tensor of random values): the
    pull's GGUF check passes it, and its bytes differ with `seed`."""
    from gguf import GGMLQuantizationType, GGUFValueType

    from tests.support.gguf_files import Tensor, header, kv, string, u32_kv

    floats = max(8, size // 4 // 8 * 8)
    tensor = Tensor(b"token_embd.weight", (floats,), GGMLQuantizationType.F32, 0)
    arch = kv("general.architecture", GGUFValueType.STRING, string(b"qwen2"))
    head = header(arch + u32_kv("general.alignment", 32), 2, [tensor])
    return head + random.Random(seed).randbytes(tensor.nbytes)


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]


@dataclass
class RegistryServer:
    token: str | None = None
    issued_token: str | None = None  # what /token hands out; None: `token` (a wrong one: refused)
    realm_host: str | None = None  # host:port the realm names; None: this server's own
    storage: RegistryServer | None = None  # where blob GETs are redirected
    rate: float | None = None  # bytes per second for blob bodies; None: as fast as possible
    cut_after: int | None = None  # bytes of a blob body sent before the connection is cut
    blobs: dict[str, bytes] = field(default_factory=dict)
    manifests: dict[tuple[str, str, str], bytes] = field(default_factory=dict)
    served: int = 0  # blob body bytes sent, all requests together
    requests: list[Request] = field(default_factory=list)
    tokens_issued: int = 0

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_port
        self.host = f"127.0.0.1:{self.port}"
        self.alias = f"localhost:{self.port}"  # the same server under another host name

    # -- content -------------------------------------------------------------------------

    def add_model(self, ns: str, model: str, tag: str, weights: bytes,
                  config: bytes = b'{"model_format":"gguf"}') -> bytes:
        """Serve a model of one weights layer and a config; returns its manifest's bytes."""
        layers = [{"mediaType": MODEL_TYPE, "digest": digest_of(weights), "size": len(weights)}]
        manifest = json.dumps({
            "schemaVersion": 2, "mediaType": MANIFEST_TYPE,
            "config": {"mediaType": CONFIG_TYPE, "digest": digest_of(config), "size": len(config)},
            "layers": layers,
        }).encode()
        for server in (self, self.storage):
            if server is not None:
                server.blobs[digest_of(weights)] = weights
                server.blobs[digest_of(config)] = config
        self.manifests[(ns, model, tag)] = manifest
        return manifest

    def served_total(self) -> int:
        """Blob bytes sent by this server and its storage."""
        return self.served + (self.storage.served if self.storage else 0)

    def count(self, n: int) -> None:
        with self._lock:
            self.served += n

    # -- life ----------------------------------------------------------------------------

    def __enter__(self) -> RegistryServer:
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()
        if self.storage is not None:
            self.storage.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        if self.storage is not None:
            self.storage.__exit__()


def _handler(registry: RegistryServer) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(_Handler):
        server_state = registry

    return Handler


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_state: RegistryServer

    def log_message(self, *args: object) -> None:
        pass

    def do_HEAD(self) -> None:  # noqa: N802 - http.server's naming
        self._answer(head=True)

    def do_GET(self) -> None:  # noqa: N802
        self._answer(head=False)

    def _answer(self, head: bool) -> None:
        reg = self.server_state
        reg.requests.append(Request(self.command, self.path, dict(self.headers.items())))
        if self.path.startswith("/token"):
            self._token()
        elif reg.token and self.path.startswith("/v2/") and not self._authorized():
            self._challenge()
        elif match := _MANIFEST.match(self.path):
            body = reg.manifests.get(match.groups())
            if body is None:
                self._json(404, {"errors": [{"code": "MANIFEST_UNKNOWN", "message": "manifest unknown"}]})
            else:
                self._bytes(200, body, {"Content-Type": MANIFEST_TYPE,
                                        "Docker-Content-Digest": digest_of(body)}, head)
        elif match := _BLOB.search(self.path):
            self._blob(match.group(1), head)
        else:
            self._json(404, {"errors": [{"code": "NAME_UNKNOWN", "message": "not found"}]})

    def _authorized(self) -> bool:
        return self.headers.get("Authorization") == f"Bearer {self.server_state.token}"

    def _challenge(self) -> None:
        reg = self.server_state
        realm = f"http://{reg.realm_host or reg.host}/token"
        scope = "repository:" + "/".join(self.path.split("/")[2:4]) + ":pull"
        self._json(401, {"errors": [{"code": "UNAUTHORIZED", "message": "authentication required"}]},
                   {"WWW-Authenticate": f'Bearer realm="{realm}",service="test-registry",scope="{scope}"'})

    def _token(self) -> None:
        reg = self.server_state
        with reg._lock:
            reg.tokens_issued += 1
        self._json(200, {"token": reg.issued_token or reg.token})

    def _blob(self, digest: str, head: bool) -> None:
        reg = self.server_state
        data = reg.blobs.get(digest)
        if data is None:
            self._json(404, {"errors": [{"code": "BLOB_UNKNOWN", "message": "blob unknown"}]})
            return
        if reg.storage is not None and not head:
            self.send_response(307)
            self.send_header("Location", f"http://{reg.storage.alias}/blobs/{digest}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        etag = f'"{digest}"'
        start, status, headers = 0, 200, {"ETag": etag, "Accept-Ranges": "bytes",
                                         "Docker-Content-Digest": digest}
        wanted = _RANGE.match(self.headers.get("Range", ""))
        if wanted and self.headers.get("If-Range", etag) == etag:
            start = int(wanted.group(1))
            if start >= len(data):
                self._bytes(416, b"", {"Content-Range": f"bytes */{len(data)}"}, head)
                return
            status = 206
            headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
        if head:
            self._bytes(status, data[start:], headers, head=True)
            return
        self._send_slowly(status, data[start:], headers)

    def _send_slowly(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        reg = self.server_state
        self.send_response(status)
        for key, value in {**headers, "Content-Type": "application/octet-stream",
                           "Content-Length": str(len(body))}.items():
            self.send_header(key, value)
        self.end_headers()
        limit = len(body) if reg.cut_after is None else min(len(body), reg.cut_after)
        try:
            for chunk in _chunks(body[:limit], reg.rate):
                self.wfile.write(chunk)
                self.wfile.flush()
                reg.count(len(chunk))
        except (BrokenPipeError, ConnectionResetError):
            pass
        if limit < len(body):
            self.close_connection = True  # promised more than it sent: the client sees a cut

    def _json(self, status: int, doc: Any, headers: dict[str, str] | None = None) -> None:
        self._bytes(status, json.dumps(doc).encode(),
                    {"Content-Type": "application/json", **(headers or {})}, self.command == "HEAD")

    def _bytes(self, status: int, body: bytes, headers: dict[str, str], head: bool) -> None:
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head:
            self.wfile.write(body)


def _chunks(body: bytes, rate: float | None, size: int = 64 << 10) -> Iterator[bytes]:
    """The body in chunks, paced to `rate` bytes per second when one is given."""
    started = time.monotonic()
    for pos in range(0, len(body), size):
        if rate:
            delay = started + pos / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        yield body[pos:pos + size]
