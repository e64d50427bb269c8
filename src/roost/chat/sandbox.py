"""Render untrusted chat templates in worker processes, so that none can take the server down.

The checks in roost.chat.template refuse the common bombs, but a template is a program: only a
separate process, with an address-space limit and a deadline after which the server kills it,
bounds every template's memory and time (roost.chat.render_worker). Workers stay warm and are
reused, so a render costs a pipe round trip rather than a process start.

render() blocks for up to DEADLINE_S seconds: call it from a worker thread, not the event loop.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import json
import os
import queue
import select
import subprocess
import sys
import threading
import time
from typing import IO, Any

from roost.chat.template import TemplateRenderError

__all__ = ["DEADLINE_S", "POOL_SIZE", "Pool", "TemplateRenderError", "close", "render"]

DEADLINE_S = 5.0  # the longest one render may take; read at each call, so it can be changed
POOL_SIZE = 2
_GRACE_S = 0.5  # the worker answers at the deadline itself; it is killed only if it does not
_START_S = 30.0  # a worker's start, on a busy machine


class _Gone(Exception):
    pass


class _Overdue(Exception):
    pass


class _Worker:
    """One worker process and the pipes to it."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "roost.chat.render_worker"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0)
        self._stdin: IO[bytes] = self.proc.stdin  # type: ignore[assignment]
        self._stdout: IO[bytes] = self.proc.stdout  # type: ignore[assignment]
        # Non-blocking, so that a large request cannot block past the deadline on a stuck worker.
        os.set_blocking(self._stdin.fileno(), False)
        for pipe in (self._stdin, self._stdout):  # a long prompt in fewer round trips
            with contextlib.suppress(OSError):
                fcntl.fcntl(pipe.fileno(), fcntl.F_SETPIPE_SZ, 1 << 20)
        try:
            ready = self.exchange(b"", time.monotonic() + _START_S)
        except (_Gone, _Overdue):
            ready = None
        if ready != {"ready": True}:
            self.stop()
            raise RuntimeError("the chat template renderer did not start")

    def exchange(self, request: bytes, deadline: float) -> Any:
        """Write request, read one line back, all before deadline (time.monotonic())."""
        pending = memoryview(request)
        out_fd, in_fd = self._stdout.fileno(), self._stdin.fileno()
        poller = select.poll()
        poller.register(out_fd, select.POLLIN)
        if pending:
            poller.register(in_fd, select.POLLOUT)
        chunks: list[bytes] = []
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise _Overdue
            for fd, _ in poller.poll(left * 1000):
                try:
                    if fd == in_fd:
                        pending = pending[os.write(in_fd, pending):]
                        if not pending:
                            poller.unregister(in_fd)
                        continue
                    chunk = os.read(out_fd, 1 << 20)
                except BlockingIOError:
                    continue
                except OSError as exc:  # the worker died: a broken pipe
                    raise _Gone from exc
                if not chunk:
                    raise _Gone
                head, newline, _ = chunk.partition(b"\n")
                chunks.append(head)
                if newline:
                    return json.loads(b"".join(chunks))

    def kill(self) -> None:
        """Kill and reap, so that no zombie is left; safe while another thread uses the pipes."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()

    def stop(self) -> None:
        self.kill()
        self._stdin.close()
        self._stdout.close()


class Pool:
    """A few warm workers; each call takes one, and one that overran or died is replaced."""

    def __init__(self, size: int = POOL_SIZE, deadline_s: float | None = None) -> None:
        self.deadline_s = deadline_s  # None: the module's DEADLINE_S
        self._idle: queue.LifoQueue[_Worker | None] = queue.LifoQueue()
        self._live: set[_Worker] = set()
        self._lock = threading.Lock()
        for _ in range(size):
            self._idle.put(None)  # started on first use

    def render(self, template: str | None, messages: list[dict[str, Any]], *, bos_token: str = "",
               eos_token: str = "", tools: list[dict[str, Any]] | None = None,
               add_generation_prompt: bool = True, think: Any = None) -> str:
        """template.render, in a worker: TemplateRenderError also for overtime and memory."""
        limit = DEADLINE_S if self.deadline_s is None else self.deadline_s
        job = {"template": template, "messages": messages, "bos_token": bos_token,
               "eos_token": eos_token, "tools": tools, "add_generation_prompt": add_generation_prompt,
               "think": think, "timeout": limit}
        request = json.dumps(job).encode() + b"\n"
        worker = self._take(limit)
        healthy = False
        try:
            if worker is None:
                worker = _Worker()
                with self._lock:
                    self._live.add(worker)
            reply = worker.exchange(request, time.monotonic() + limit + _GRACE_S)
            healthy = True
        except _Overdue:
            raise TemplateRenderError(f"chat template took longer than {limit:g} s") from None
        except _Gone:
            raise TemplateRenderError("chat template renderer stopped while rendering") from None
        finally:
            self._release(worker, healthy)
        if "ok" in reply:
            return str(reply["ok"])
        raise TemplateRenderError(str(reply.get("error", "chat template failed")))

    def _take(self, limit: float) -> _Worker | None:
        """An idle worker fit for use, or None for one to start."""
        try:  # every worker busy: wait while one may still be killed and replaced
            worker = self._idle.get(timeout=limit + _GRACE_S + 1)
        except queue.Empty:
            raise TemplateRenderError("chat template renderer is busy; try again") from None
        if worker is None:
            return None
        with self._lock:  # it may have been stopped by close(), or died, while idle
            fit = worker in self._live and worker.proc.poll() is None
            if not fit:
                self._live.discard(worker)
        if not fit:
            worker.stop()
            return None
        return worker

    def _release(self, worker: _Worker | None, healthy: bool) -> None:
        with self._lock:
            keep = worker is not None and healthy and worker in self._live
            if worker is not None and not keep:
                self._live.discard(worker)
        if worker is not None and not keep:
            worker.stop()
        self._idle.put(worker if keep else None)

    def pids(self) -> list[int]:
        """The live workers' process ids."""
        with self._lock:
            return [w.proc.pid for w in self._live]

    def close(self) -> None:
        """Stop every worker, busy or not; the pool starts new ones if used again."""
        with self._lock:
            workers, self._live = self._live, set()
        for worker in workers:
            worker.kill()  # a busy one's pipes are closed by the thread using it


_pool = Pool()


def render(template: str | None, messages: list[dict[str, Any]], *, bos_token: str = "",
           eos_token: str = "", tools: list[dict[str, Any]] | None = None,
           add_generation_prompt: bool = True, think: Any = None) -> str:
    """template.render with bounded memory and time: see the module's docstring."""
    return _pool.render(template, messages, bos_token=bos_token, eos_token=eos_token, tools=tools,
                        add_generation_prompt=add_generation_prompt, think=think)


def close() -> None:
    """Stop the shared pool's workers; run at exit, so that none outlives the server."""
    _pool.close()


atexit.register(close)
