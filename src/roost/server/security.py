"""Who may talk to the server: the DNS-rebinding guard, CORS headers, and the API key.

Pure ASGI middleware (no per-request task or body buffering), ordered outside-in in app.py:
the Host guard first, then CORS (so preflights are answered and 401s carry CORS headers),
then the key check.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import re
import socket
from collections.abc import Iterable
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

from roost.server import error_shapes

# The headers the official OpenAI SDKs send (Python and JavaScript): a browser's preflight
# names them, and Starlette matches allowed headers literally, so each is listed.
STAINLESS_HEADERS = tuple(f"x-stainless-{name}" for name in (
    "arch", "async", "custom-event-handler", "custom-poll-interval", "helper-method", "lang",
    "os", "package-version", "poll-helper", "raw-response", "read-timeout", "retry-count",
    "runtime", "runtime-version", "stream-helper", "timeout",
))
ALLOWED_HEADERS = ("Authorization", "Content-Type", "User-Agent", "Accept", "X-Requested-With",
                   "OpenAI-Beta", "X-Api-Key", "Anthropic-Version", "Anthropic-Beta",
                   "Anthropic-Dangerous-Direct-Browser-Access", *STAINLESS_HEADERS)

# Routes a client must reach without a key: the status line, the version and health probes.
_OPEN = {("GET", "/"), ("HEAD", "/"), ("GET", "/api/version"), ("HEAD", "/api/version"),
         ("GET", "/healthz")}


def _page_file(method: str, path: str) -> bool:
    """The chat page's static files load without the key: the page then asks for it."""
    return method in ("GET", "HEAD") and path.startswith("/web/")


def is_loopback(host: str) -> bool:
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _own_names() -> set[str]:
    host = socket.gethostname().lower()
    return {host, host.split(".", 1)[0]} - {""}


LOCAL_ORIGINS = r"(https?://(localhost|127\.0\.0\.1|\[::1\]|0\.0\.0\.0)(:\d+)?|(app|file|tauri|vscode-webview|vscode-file)://.*)"
_SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


class OriginGuard:
    """A web page may not change anything: a POST, PUT, PATCH or DELETE that carries an Origin
    CORS does not allow is refused before any route runs. CORS alone only hides the answer,
    and a `text/plain` body needs no preflight."""

    def __init__(self, app: ASGIApp, allowed: Iterable[str] = (), same_origin: bool = False) -> None:
        self.app = app
        self.allowed = {a.strip().rstrip("/") for a in allowed if a.strip()}
        self.local = re.compile(LOCAL_ORIGINS)
        # The chat page posts to its own origin (http://HOST:PORT as the browser typed it). That
        # is safe only where a rebound name cannot pose as it: the Host guard is on (a loopback
        # bind) or a key is needed, which a page on another origin does not hold.
        self.same_origin = same_origin

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] not in _SAFE_METHODS:
            origin = _header(scope, b"origin")
            if origin and not self._ok(origin, scope):
                await _json(send, 403, {"error": f"origin {origin} is not allowed (ROOST_ORIGINS)"})
                return
        await self.app(scope, receive, send)

    def _ok(self, origin: str, scope: Scope) -> bool:
        if origin in self.allowed or self.local.fullmatch(origin):
            return True
        host = _header(scope, b"host")
        return self.same_origin and bool(host) and origin in (f"http://{host}", f"https://{host}")


class HostGuard:
    """On a loopback bind, refuse Host names a web page could rebind to this machine.

    Allowed: localhost and *.localhost, IP literals, this machine's own hostname, and the names
    a user lists in ROOST_ALLOWED_HOSTS (`name` or `.suffix`). Names under .local and
    .internal are answered by peers on the LAN (mDNS), so they are allowed only when listed.
    """

    def __init__(self, app: ASGIApp, bind_host: str, allowed: Iterable[str] = ()) -> None:
        self.app = app
        self.active = is_loopback(bind_host)
        self.allowed = _own_names() | {a.strip().lower() for a in allowed if a.strip()}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self.active and not self._ok(_header(scope, b"host")):
            await _json(send, 403, {"error": "forbidden host"})
            return
        await self.app(scope, receive, send)

    def _ok(self, host: str) -> bool:
        if not host:
            return True
        name = host if host.endswith("]") else host.rsplit(":", 1)[0]
        name = name.strip("[]").lower().rstrip(".")
        if name == "localhost" or name.endswith(".localhost") or name in self.allowed:
            return True
        if any(a.startswith(".") and name.endswith(a) for a in self.allowed):
            return True
        try:
            ipaddress.ip_address(name)  # an address literal cannot be rebound by DNS
        except ValueError:
            return False
        return True


class ApiKey:
    """With a key set, every route but the status line and version needs `Bearer KEY`, or the
    key in `x-api-key`, where Anthropic's clients send it.

    The comparison is constant-time. Without a key on a non-loopback bind (the user opted out),
    the registry's write routes stay closed: nobody on the network may plant a model.
    """

    def __init__(self, app: ASGIApp, key: str | None, bind_host: str) -> None:
        self.app = app
        self.key = key.encode() if key else None
        self.public = not is_loopback(bind_host)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method, path = scope["method"], scope["path"]
        if (self.key is not None and (method, path) not in _OPEN and not _page_file(method, path)
                and not self._authorized(scope)):
            await _json(send, 401, _unauthorized(path), {"www-authenticate": "Bearer"})
            return
        if (self.key is None and self.public and path.startswith("/v2/")
                and method not in ("GET", "HEAD")):
            await _json(send, 403, {"errors": [{"code": "DENIED", "message":
                        "pushing to this server needs ROOST_API_KEY on a non-loopback address"}]})
            return
        await self.app(scope, receive, send)

    def _authorized(self, scope: Scope) -> bool:
        scheme, _, token = _header(scope, b"authorization").partition(" ")
        assert self.key is not None
        bearer = token if scheme.lower() == "bearer" else ""
        return any(hmac.compare_digest(t.strip().encode("latin-1"), self.key)
                   for t in (bearer, _header(scope, b"x-api-key")) if t)


def _unauthorized(path: str) -> dict[str, Any]:
    message = "unauthorized: this server needs an API key (Authorization: Bearer KEY)"
    return error_shapes.for_path(path, 401, message, code="invalid_api_key")


def _header(scope: Scope, name: bytes) -> str:
    for key, value in scope.get("headers") or ():
        if key == name:
            return str(value.decode("latin-1"))
    return ""


async def _json(send: Send, status: int, body: dict[str, Any],
                headers: dict[str, str] | None = None) -> None:
    data = json.dumps(body).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
    raw += [(k.encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": data})
