"""Stop work nobody is waiting for: an answer whose client hung up.

A route that gathers a whole answer before replying would go on generating until the
context is full, holding a slot: `unless_disconnected` races the work against the ASGI
`http.disconnect` message and cancels it when the client leaves first. A streaming response
notices a departed client when a write fails, or when Starlette listens for the disconnect,
which it does only on servers that speak ASGI 2.3 (uvicorn today), not 2.4: there an answer
that writes nothing for a while (a possible tool call held back) would run on.
`WatchedStreamingResponse` always listens. Either
way the cancellation closes the answer's stream, which tells the runner to drop the sequence.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable
from typing import TypeVar

import anyio
from fastapi import Request
from fastapi.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

T = TypeVar("T")


class ClientGone(Exception):
    """The client disconnected before its answer was ready."""


async def unless_disconnected(request: Request, work: Awaitable[T]) -> T:
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        task.cancel()
        raise
    finally:
        watcher.cancel()
    if not task.done():
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
        raise ClientGone()
    return task.result()


async def _disconnected(request: Request) -> None:
    # The body has been read by now, so the next message is the disconnect (or nothing).
    while (await request.receive())["type"] != "http.disconnect":
        pass


class WatchedStreamingResponse(StreamingResponse):
    """A stream that ends as soon as the client disconnects, written to or not."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async with anyio.create_task_group() as group:
            async def stream() -> None:
                with contextlib.suppress(OSError):  # the client left mid-write
                    await self.stream_response(send)
                group.cancel_scope.cancel()

            group.start_soon(stream)
            await self.listen_for_disconnect(receive)
            group.cancel_scope.cancel()
