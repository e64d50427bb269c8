"""A Hugging Face Hub on 127.0.0.1 for tests: the part of its HTTP API huggingface_hub uses.

It answers what reference/registry.md section 6 lists: `GET /api/models/{repo}` (and
`/revision/{rev}`; with `blobs=true` each sibling has its size and LFS sha256), the tree
listing `/api/models/{repo}/tree/{rev}`, and `HEAD`/`GET /{repo}/resolve/{rev}/{path}` with
X-Repo-Commit, ETag (the sha256, as the Hub gives for LFS files), X-Linked-Etag and
X-Linked-Size, Range answered with 206, and errors as X-Error-Code. The files are real bytes:
the bundled model's part files read in order, or bytes a test gives. A second listener on
127.0.0.2 plays the CDN the Hub redirects large files to, so a test can see that a token
does not follow the redirect. Every request is recorded with its Authorization header.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from roost.models import catalog

COMMIT = "0123456789abcdef0123456789abcdef01234567"
_CHUNK = 1 << 20


@dataclass(frozen=True)
class File:
    """A file in a fake repo: its bytes come from `data` or from part files read in order."""

    size: int
    sha256: str
    data: bytes | None = None
    parts: tuple[Path, ...] = ()

    @classmethod
    def of(cls, data: bytes) -> File:
        return cls(len(data), hashlib.sha256(data).hexdigest(), data=data)

    @classmethod
    def catalog(cls, entry: catalog.CatalogModel) -> File:
        """The real GGUF of a catalog model, from its installed part packages."""
        return cls(entry.size, entry.sha256, parts=tuple(catalog.part_paths(entry)))

    def read(self, start: int, end: int) -> Iterator[bytes]:
        """Bytes start..end-1."""
        if self.data is not None:
            yield self.data[start:end]
            return
        left = end - start
        for chunk in catalog.read_parts(list(self.parts), start, _CHUNK):
            yield chunk[:left]
            left -= len(chunk)
            if left <= 0:
                return


@dataclass
class Repo:
    files: dict[str, File]
    token: str | None = None  # a private repo: only this bearer token sees it


@dataclass
class Seen:
    method: str
    host: str
    path: str
    authorization: str | None
    range: str | None


@dataclass
class FakeHub:
    repos: dict[str, Repo] = field(default_factory=dict)
    seen: list[Seen] = field(default_factory=list)
    redirect_files: bool = False  # resolve GETs answer 302 to the "CDN" on 127.0.0.2
    cut_after: dict[str, int] = field(default_factory=dict)  # path: the next GET breaks off there
    url: str = ""
    cdn_url: str = ""

    def add(self, repo: str, files: dict[str, File], token: str | None = None) -> None:
        self.repos[repo] = Repo(files, token)

    def requests_to(self, path_part: str, method: str = "GET") -> list[Seen]:
        return [s for s in self.seen if path_part in s.path and s.method == method]


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hangs up mid-file (a test's cut, a cancelled pull) is no error here."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


def start(hub: FakeHub) -> list[ThreadingHTTPServer]:
    """Serve `hub` on 127.0.0.1 (the Hub) and 127.0.0.2 (its CDN); stop with `stop`."""
    servers = []
    for host in ("127.0.0.1", "127.0.0.2"):
        server = _Server((host, 0), _handler(hub))
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
    hub.url = f"http://127.0.0.1:{servers[0].server_address[1]}"
    hub.cdn_url = f"http://127.0.0.2:{servers[1].server_address[1]}"
    return servers


def stop(servers: list[ThreadingHTTPServer]) -> None:
    for server in servers:
        server.shutdown()
        server.server_close()


_INFO = re.compile(r"^/api/models/([^/]+/[^/]+)(?:/revision/([^/]+))?$")
_TREE = re.compile(r"^/api/models/([^/]+/[^/]+)/tree/([^/]+)(?:/(.*))?$")
_RESOLVE = re.compile(r"^/([^/]+/[^/]+)/resolve/([^/]+)/(.+)$")
_CDN = re.compile(r"^/cdn/([^/]+/[^/]+)/(.+)$")


def _handler(hub: FakeHub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base's name
            pass

        def do_HEAD(self) -> None:
            self._route(body=False)

        def do_GET(self) -> None:
            self._route(body=True)

        def _route(self, body: bool) -> None:
            url = urlsplit(self.path)
            path = unquote(url.path)
            hub.seen.append(Seen(self.command, self.headers.get("Host", ""), path,
                                 self.headers.get("Authorization"), self.headers.get("Range")))
            query = parse_qs(url.query)
            if m := _INFO.match(path):
                self._info(m.group(1), m.group(2), "true" in query.get("blobs", []))
            elif m := _TREE.match(path):
                self._tree(m.group(1), m.group(3) or "")
            elif m := _RESOLVE.match(path):
                self._resolve(m.group(1), m.group(3), body, cdn=False)
            elif m := _CDN.match(path):
                self._resolve(m.group(1), m.group(2), body, cdn=True)
            else:
                self._error(404, "EntryNotFound", f"no route {path}")

        def _repo(self, name: str) -> Repo | None:
            repo = hub.repos.get(name)
            if repo is None:
                return None
            if repo.token and self.headers.get("Authorization") != f"Bearer {repo.token}":
                return None  # the Hub answers a private repo it will not show as missing
            return repo

        def _info(self, name: str, revision: str | None, blobs: bool) -> None:
            repo = self._repo(name)
            if repo is None:
                return self._error(401, "RepoNotFound", "Repository not found")
            if revision not in (None, "main", COMMIT):
                return self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
            siblings = []
            for path, file in repo.files.items():
                sibling: dict[str, Any] = {"rfilename": path}
                if blobs:
                    sibling.update(size=file.size, blobId=hashlib.sha1(path.encode()).hexdigest(),
                                   lfs={"size": file.size, "sha256": file.sha256, "pointerSize": 134})
                siblings.append(sibling)
            self._json({"id": name, "modelId": name, "sha": COMMIT, "private": bool(repo.token),
                        "gated": False, "tags": ["gguf"], "siblings": siblings})

        def _tree(self, name: str, under: str) -> None:
            repo = self._repo(name)
            if repo is None:
                return self._error(401, "RepoNotFound", "Repository not found")
            entries = [{"type": "file", "path": path, "size": file.size,
                        "oid": hashlib.sha1(path.encode()).hexdigest(),
                        "lfs": {"oid": file.sha256, "size": file.size, "pointerSize": 134}}
                       for path, file in repo.files.items() if path.startswith(under)]
            self._json(entries)

        def _resolve(self, name: str, path: str, body: bool, cdn: bool) -> None:
            repo = hub.repos.get(name) if cdn else self._repo(name)
            if repo is None:
                return self._error(401, "RepoNotFound", "Repository not found")
            file = repo.files.get(path)
            if file is None:
                return self._error(404, "EntryNotFound", f"{path} does not exist", commit=True)
            meta = {"X-Repo-Commit": COMMIT, "ETag": f'"{file.sha256}"',
                    "X-Linked-Etag": f'"{file.sha256}"', "X-Linked-Size": str(file.size),
                    "Accept-Ranges": "bytes"}
            if hub.redirect_files and not cdn:
                self.send_response(302)
                self.send_header("Location", f"{hub.cdn_url}/cdn/{name}/{path}")
                self._headers({**meta, "Content-Length": "0"})
                return None
            start, end, status = self._range(file.size)
            self.send_response(status)
            if status == 206:
                self.send_header("Content-Range", f"bytes {start}-{end - 1}/{file.size}")
            self._headers({**meta, "Content-Length": str(end - start),
                           "Content-Type": "application/octet-stream"})
            if body:
                cut = hub.cut_after.pop(path, None)
                for chunk in file.read(start, end if cut is None else min(end, start + cut)):
                    self.wfile.write(chunk)
                if cut is not None:  # fewer bytes than Content-Length said: a broken download
                    self.wfile.flush()
                    self.close_connection = True
            return None

        def _range(self, size: int) -> tuple[int, int, int]:
            m = re.match(r"^bytes=(\d+)-(\d*)$", self.headers.get("Range", ""))
            if not m:
                return 0, size, 200
            start = int(m.group(1))
            end = int(m.group(2)) + 1 if m.group(2) else size
            return start, min(end, size), 206

        def _headers(self, headers: dict[str, str]) -> None:
            for key, value in headers.items():
                self.send_header(key, value)
            self.end_headers()

        def _json(self, doc: Any) -> None:
            data = json.dumps(doc).encode()
            self.send_response(200)
            self._headers({"Content-Type": "application/json", "Content-Length": str(len(data))})
            self.wfile.write(data)

        def _error(self, status: int, code: str, message: str, commit: bool = False) -> None:
            data = json.dumps({"error": message}).encode()
            self.send_response(status)
            extra = {"X-Repo-Commit": COMMIT} if commit else {}
            self._headers({"X-Error-Code": code, "X-Error-Message": message,
                           "Content-Type": "application/json", "Content-Length": str(len(data)),
                           **extra})
            if self.command != "HEAD":
                self.wfile.write(data)

    return Handler
