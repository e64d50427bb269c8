"""Stop work nobody is waiting for: a non-streaming answer whose client hung up.

A streaming response notices a disconnect when its next write fails (Starlette also listens
for it), but a route that gathers a whole answer before replying would go on generating
until the context is full, holding a slot. `unless_disconnected` races the work against the
ASGI `http.disconnect` message and cancels the work when the client leaves first; the
cancellation closes the answer's stream, which tells the runner to drop the sequence.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable
from typing import TypeVar

from fastapi import Request

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
