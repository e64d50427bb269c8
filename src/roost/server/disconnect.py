"""Stop work nobody is waiting for: an answer whose client hung up.

A route that gathers a whole answer before replying would go on generating until the
context is full, holding a slot: `unless_disconnected` races the work against the ASGI
`http.disconnect` message and cancels it when the client leaves first. A streaming answer
sends nothing until its first piece, that is until its prompt is evaluated (seconds for a
long one), so `first_item` awaits that piece the same way. Once streaming, a response
notices a departed client when a write fails, or when Starlette listens for the disconnect,
which it does only on servers that speak ASGI 2.3 (uvicorn today), not 2.4: there an answer
that writes nothing for a while (a possible tool call held back) would run on.
`WatchedStreamingResponse` always listens. Either way the cancellation closes the answer's
stream, which tells the runner to drop the sequence.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable
from typing import TypeVar

import anyio
from fastapi import Request
from fastapi.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from roost.scheduler.runner import RunnerError

T = TypeVar("T")


class ClientGone(Exception):
    """The client disconnected before its answer was ready."""


async def unless_disconnected(request: Request, work: Awaitable[T]) -> T:
    """`work`'s result, or ClientGone once the client has left (the work cancelled first).

    The work is awaited to its end even when this request is cancelled (a drain, a shutdown):
    its cleanup is what tells the runner to drop the sequence.
    """
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
        if not task.done():
            task.cancel()
            await asyncio.wait({task})
    if task.cancelled():
        raise ClientGone()
    return task.result()


async def first_item(request: Request, stream: AsyncIterator[T]) -> T:
    """A stream's first item, or ClientGone if the client leaves while the prompt is evaluated."""
    try:
        return await unless_disconnected(request, _next(stream))
    except StopAsyncIteration as exc:
        raise RunnerError("the answer ended before it began") from exc


async def _next(stream: AsyncIterator[T]) -> T:
    return await anext(stream)


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
