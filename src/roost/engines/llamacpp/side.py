"""Work beside the decode loop: lanes of one thread each, their results through a self-pipe.

The runner's decode loop must not stall for anything but decoding: an embedding batch (a
second context's llama_decode, seconds long), a JSON schema turned into a grammar (pure
Python), a long prompt tokenized. Each runs as a job on a `Lane`, a thread that sleeps on its
queue when it has nothing to do, so it never spins in Python beside the decode (on 2 cores a
busy Python thread halves decode speed). A job hands what it produced to the loop through the
`Mailbox`: the loop's select() watches the mailbox's pipe, and the loop, the only thread that
touches the generation context and the socket, applies it.
"""

from __future__ import annotations

import contextlib
import os
import queue
import threading
import traceback
from collections import deque
from collections.abc import Callable
from typing import Any

Event = dict[str, Any]
# What a job posts: bytes already encoded for the socket, or a request id and a call that
# returns events for it (the call runs on the loop's thread, so it may touch the batcher).
Outcome = bytes | tuple[int, Callable[[], list[Event]]]


class Mailbox:
    """Outcomes from the lanes to the loop; `fileno` is readable while any are waiting."""

    def __init__(self) -> None:
        self._r, self._w = os.pipe()
        os.set_blocking(self._r, False)
        os.set_blocking(self._w, False)
        self._items: deque[Outcome] = deque()

    def fileno(self) -> int:
        return self._r

    def post(self, item: Outcome) -> None:
        """Any thread. The item goes in before the wake-up byte, so none is ever missed."""
        self._items.append(item)
        with contextlib.suppress(BlockingIOError):  # a full pipe: a wake-up is pending anyway
            os.write(self._w, b"\0")

    def take(self) -> list[Outcome]:
        """The loop's thread: everything posted so far, in order."""
        with contextlib.suppress(BlockingIOError):
            while os.read(self._r, 4096):
                pass
        items = []
        while self._items:
            items.append(self._items.popleft())
        return items

    def close(self) -> None:
        os.close(self._r)
        os.close(self._w)


class Lane:
    """One daemon thread that runs jobs in the order they came. Jobs post their own results."""

    def __init__(self, name: str) -> None:
        self._jobs: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, job: Callable[[], None]) -> None:
        self._jobs.put(job)

    def _run(self) -> None:
        while (job := self._jobs.get()) is not None:
            try:
                job()
            except Exception:  # a job reports its own errors; this is a bug, keep the lane
                traceback.print_exc()

    def close(self, timeout: float) -> bool:
        """Stop after the jobs queued so far; say whether the thread ended within `timeout`."""
        self._jobs.put(None)
        self._thread.join(timeout)
        return not self._thread.is_alive()
