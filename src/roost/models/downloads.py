"""One download per blob in this process, however many pulls want it.

The first pull of a digest starts a thread that does the work; a later pull of the same digest
joins it. Each caller waits in its own thread and is handed the shared progress at most every
`every` seconds (so a registry pull reports as often as a catalog pull), and gets the shared
result or error. A caller leaves when its own progress callback raises (its client went away);
when the last one leaves, the download is cancelled (its partial file stays for a resume) and
forgotten, so a pull that comes later starts afresh.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from roost.models.store_errors import Cancelled

Work = Callable[[Callable[[int], None], threading.Event], None]
_QUIET = 1.0  # seconds after which an unchanged count is reported again


class _Download:
    def __init__(self) -> None:
        self.completed = 0
        self.done = threading.Event()
        self.error: BaseException | None = None
        self.cancel = threading.Event()
        self.waiters = 0

    def set_completed(self, n: int) -> None:
        self.completed = n


class Downloads:
    """The downloads in flight, by key (a blob's digest)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: dict[str, _Download] = {}

    def run(self, key: str, work: Work, progress: Callable[[int], None],
            every: float = 0.1) -> None:
        """Do `work(progress, cancel)` for `key`, or join the thread already doing it."""
        with self._lock:
            download = self._running.get(key)
            if download is None:
                download = self._running[key] = _Download()
                threading.Thread(target=self._work, args=(key, download, work), daemon=True,
                                 name=f"download {key[:19]}").start()
            download.waiters += 1
        try:
            _follow(download, progress, every)
        finally:
            self._leave(key, download)

    def _work(self, key: str, download: _Download, work: Work) -> None:
        try:
            work(download.set_completed, download.cancel)
        except BaseException as exc:  # handed to every waiter, raised in its thread
            download.error = exc
        finally:
            with self._lock:
                if self._running.get(key) is download:
                    del self._running[key]
            download.done.set()

    def _leave(self, key: str, download: _Download) -> None:
        with self._lock:
            download.waiters -= 1
            if download.waiters == 0 and not download.done.is_set():
                download.cancel.set()
                if self._running.get(key) is download:
                    del self._running[key]  # a later pull starts anew (and waits on the lock)


def _follow(download: _Download, progress: Callable[[int], None], every: float) -> None:
    """Report the shared count while the download runs; then its error, if any."""
    sent, sent_at = -1, 0.0
    while True:
        finished = download.done.wait(every)
        now = time.monotonic()
        if download.completed != sent or now - sent_at >= _QUIET or finished:
            sent, sent_at = download.completed, now
            if not (finished and download.error is not None):
                progress(sent)
        if finished:
            break
    if download.error is not None:
        if isinstance(download.error, Cancelled):
            raise Cancelled(str(download.error))
        raise download.error


__all__ = ["Downloads"]
