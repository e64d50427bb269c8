"""Request bodies before any route sees them: size, JSON nesting depth, and content type.

A JSON route reads its whole body, so one client could make the server hold any amount of
memory, or recurse the parser through thousands of nested arrays. Bodies of JSON routes are
read here up to MAX_BODY (413 past it, refused on the Content-Length alone when it is sent),
checked for depth, then handed on. Uploads (`/api/blobs`, the `/v2` registry) stream to disk
and are left alone. Ollama's routes also take JSON sent without `Content-Type:
application/json`, or with curl's default form type, as every `curl -d` example does.
"""

from __future__ import annotations

import json
import re

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from roost.server import error_shapes

MAX_BODY = 32 * 1024 * 1024
MAX_DEPTH = 64
_STREAMED = ("/api/blobs/", "/v2/")
# An unclosed string runs to the end: without the optional quote a body of `\"` repeated
# would make the scan quadratic.
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"?', re.DOTALL)
_NOT_BRACKET = re.compile(rb"[^\[\]{}]+")


def too_deep(body: bytes, limit: int = MAX_DEPTH) -> bool:
    """Whether arrays and objects nest deeper than `limit` (strings do not count).

    Each pass deletes the innermost empty pairs, so `limit` passes of C-speed replaces
    decide it without parsing: a document nested deeper still has brackets left.
    """
    brackets = _NOT_BRACKET.sub(b"", _STRING.sub(b"", body))
    for _ in range(limit):
        if not brackets:
            return False
        shorter = brackets.replace(b"[]", b"").replace(b"{}", b"")
        if len(shorter) == len(brackets):
            return False  # unbalanced: the JSON parser will say what is wrong
        brackets = shorter
    return bool(brackets)


class BodyLimits:
    def __init__(self, app: ASGIApp, max_body: int = MAX_BODY) -> None:
        self.app = app
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS")
                or scope["path"].startswith(_STREAMED)):
            await self.app(scope, receive, send)
            return
        length = _content_length(scope)
        if length is not None and length > self.max_body:
            await _refuse(send, scope, 413, f"request body is larger than {self.max_body >> 20} MiB")
            return
        chunks, more = bytearray(), True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away before sending its body
            chunks += message.get("body", b"")
            more = message.get("more_body", False)
            if len(chunks) > self.max_body:
                await _refuse(send, scope, 413, f"request body is larger than {self.max_body >> 20} MiB")
                return
        body = bytes(chunks)
        if too_deep(body):
            await _refuse(send, scope, 400, f"invalid JSON: nested deeper than {MAX_DEPTH} levels")
            return
        scope = _as_json(scope) if body else scope
        await self.app(scope, _replay(body, receive), send)


def _content_length(scope: Scope) -> int | None:
    for key, value in scope.get("headers") or ():
        if key == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _as_json(scope: Scope) -> Scope:
    """Every JSON route's body is JSON, whatever the client's Content-Type says."""
    headers = [(k, v) for k, v in scope.get("headers") or () if k != b"content-type"]
    return {**scope, "headers": [*headers, (b"content-type", b"application/json")]}


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()  # after the body: wait for the disconnect, as routes expect

    return replay


async def _refuse(send: Send, scope: Scope, status: int, message: str) -> None:
    data = json.dumps(error_shapes.for_path(scope["path"], status, message)).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(data)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": data})
