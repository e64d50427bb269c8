"""A graceful stop: on SIGTERM or Ctrl+C, answers in flight get ROOST_DRAIN_TIMEOUT to finish.

uvicorn, told to stop, closes the listening socket and waits for open connections; at its own
timeout it cancels the requests' tasks, which cuts a stream off mid-body (the client reads a
truncated chunked response, not an error) and answers a request still waiting with a plain
text 500. `DrainGuard` ends them first, when the drain time is up, each in its dialect: a
stream gets a last error frame (Ollama's NDJSON `{"error": ...}` line, OpenAI's SSE
`data: {"error": {...}}` event) and a proper end; a request that has sent nothing yet gets a
503 in its route's error shape. Cancelling a request's task closes its answer's stream, which
tells the runner to drop the sequence, so the runners are idle when the scheduler stops them.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from roost.server import error_shapes
from roost.server.ollama import NDJSON, ndjson_line
from roost.server.openai import SSE

ErrorResponse = Callable[[str, int, str], Response]  # (path, status, message): the route's shape


class Drain:
    """The requests in flight, and the clock that ends them once shutdown has begun."""

    def __init__(self) -> None:
        self.requests: set[asyncio.Task[object]] = set()
        self.ended: set[asyncio.Task[object]] = set()  # cancelled here, not by anyone else
        self.message = "the server is shutting down"
        self._loop: asyncio.AbstractEventLoop | None = None

    def begin(self, timeout: float) -> None:
        """Shutdown has begun: end whatever still runs `timeout` seconds from now."""
        self._loop = asyncio.get_running_loop()
        self.message = (f"the server is shutting down; answers still running after "
                        f"{timeout:g} s (ROOST_DRAIN_TIMEOUT) are ended")
        self._loop.call_later(timeout, self.end_all)

    def end_now(self) -> None:
        """A second Ctrl+C: end everything without waiting (from a signal handler too)."""
        self.message = "the server is shutting down; the answer was ended at once"
        if self._loop is not None and not self._loop.is_closed():
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self.end_all)

    def end_all(self) -> None:
        for task in list(self.requests):
            self.ended.add(task)
            task.cancel(self.message)


class DrainGuard:
    """Pure ASGI middleware: each request runs in its own task (uvicorn's), registered with the
    Drain while it runs; a request the drain ends is answered here."""

    def __init__(self, app: ASGIApp, drain: Drain, error: ErrorResponse) -> None:
        self.app = app
        self.drain = drain
        self.error = error

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        task = asyncio.current_task()
        if scope["type"] != "http" or task is None:
            await self.app(scope, receive, send)
            return
        sent = _Progress()

        async def watched_send(message: Message) -> None:
            sent.saw(message)
            await send(message)

        self.drain.requests.add(task)
        try:
            await self.app(scope, receive, watched_send)
        except asyncio.CancelledError:
            if task not in self.drain.ended:
                raise
            task.uncancel()
            await self._end(scope, receive, send, sent)
        finally:
            self.drain.requests.discard(task)
            self.drain.ended.discard(task)

    async def _end(self, scope: Scope, receive: Receive, send: Send, sent: _Progress) -> None:
        message = self.drain.message
        if not sent.started:
            await self.error(scope["path"], 503, message)(scope, receive, send)
        elif not sent.finished:
            frame = _error_frame(scope["path"], sent.content_type, message)
            if frame is not None:  # otherwise the connection closes mid-body: an error too
                await send({"type": "http.response.body", "body": frame, "more_body": False})


def _error_frame(path: str, content_type: str, message: str) -> bytes | None:
    if content_type.startswith(NDJSON):
        return ndjson_line({"error": message})
    if content_type.startswith(SSE):
        return error_shapes.sse_error_frame(path, message)
    return None


class _Progress:
    """What a request has sent: nothing, a started body, or a whole response."""

    def __init__(self) -> None:
        self.started = False
        self.finished = False
        self.content_type = ""

    def saw(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.started = True
            for name, value in message.get("headers", []):
                if name.lower() == b"content-type":
                    self.content_type = value.decode("latin-1").lower()
        elif message["type"] == "http.response.body" and not message.get("more_body", False):
            self.finished = True
