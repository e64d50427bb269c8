"""Which models are loaded: load on demand, share between requests, unload when idle.

Loading is serialised per model under a lock; requests to a loaded model never wait on a
lock while they stream. A runner stays loaded while requests hold it and for its
keep_alive after the last one (0: unload at once, negative: never). Past
ROOST_MAX_LOADED_MODELS the least recently used idle model is unloaded first; past
ROOST_MAX_QUEUE waiting requests, new ones are refused (HTTP 503).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import IO

from roost import config
from roost.durations import parse_duration
from roost.models.resolve import ModelRef
from roost.scheduler import memory
from roost.scheduler.runner import Runner, RunnerError, RunnerSpec

RunnerFactory = Callable[[RunnerSpec], Awaitable[Runner]]


class QueueFull(RuntimeError):
    pass


@dataclass
class Loaded:
    ref: ModelRef
    runner: Runner
    num_ctx: int
    keep_alive: float
    refcount: int = 0
    expires_at: float = 0.0  # wall-clock seconds; inf while forever
    last_used: float = field(default_factory=time.monotonic)
    timer: asyncio.TimerHandle | None = None

    @property
    def key(self) -> str:
        return self.ref.id


class Scheduler:
    def __init__(self, log: IO[bytes] | None = None,
                 runner_factory: RunnerFactory | None = None) -> None:
        self.loaded: dict[str, Loaded] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._log = log
        self._factory = runner_factory or (lambda spec: Runner.spawn(spec, self._log))
        self._pending = 0

    @contextlib.asynccontextmanager
    async def use(self, ref: ModelRef, num_ctx: int | None,
                  keep_alive: float | None) -> AsyncIterator[Loaded]:
        """Hold a loaded model for the duration of one request."""
        if self.waiting() >= config.max_queue():
            raise QueueFull("server busy, please try again.  maximum pending requests exceeded")
        self._pending += 1
        try:
            loaded = await self._acquire(ref, num_ctx, keep_alive)
        finally:
            self._pending -= 1
        try:
            yield loaded
        finally:
            self._release(loaded)

    def waiting(self) -> int:
        """Requests not yet decoding: loading, or queued behind a runner's busy slots."""
        queued = sum(max(0, m.refcount - m.runner.n_parallel) for m in self.loaded.values())
        return self._pending + queued

    async def _acquire(self, ref: ModelRef, num_ctx: int | None,
                       keep_alive: float | None) -> Loaded:
        lock = self._locks.setdefault(ref.id, asyncio.Lock())
        async with lock:
            loaded = self.loaded.get(ref.id)
            want_ctx = num_ctx or _default_ctx(ref)
            if loaded and (not loaded.runner.alive or
                           (want_ctx > loaded.num_ctx and loaded.refcount == 0)):
                await self._unload(loaded)
                loaded = None
            if loaded is None:
                spec = RunnerSpec(ref.weights, want_ctx, config.num_parallel(), config.num_threads())
                await self._make_room(memory.estimate(ref.weights, ref.config, want_ctx,
                                                      spec.num_parallel))
                runner = await self._factory(spec)
                loaded = Loaded(ref, runner, runner.n_ctx, _keep_alive(keep_alive))
                self.loaded[ref.id] = loaded
            elif keep_alive is not None:
                loaded.keep_alive = _keep_alive(keep_alive)
            loaded.refcount += 1
            loaded.last_used = time.monotonic()
            loaded.expires_at = _expiry(loaded.keep_alive)
            if loaded.timer:
                loaded.timer.cancel()
                loaded.timer = None
            return loaded

    def _release(self, loaded: Loaded) -> None:
        loaded.refcount -= 1
        loaded.last_used = time.monotonic()
        if loaded.refcount > 0:
            return
        if not loaded.runner.alive:
            self.loaded.pop(loaded.key, None)
            asyncio.ensure_future(loaded.runner.stop())
            return
        loaded.expires_at = _expiry(loaded.keep_alive)
        if loaded.keep_alive >= 0:
            loop = asyncio.get_running_loop()
            loaded.timer = loop.call_later(
                loaded.keep_alive, lambda: asyncio.ensure_future(self._expire(loaded))
            )

    async def _expire(self, loaded: Loaded) -> None:
        if loaded.refcount == 0 and self.loaded.get(loaded.key) is loaded:
            await self._unload(loaded)

    async def _make_room(self, need: int) -> None:
        """Unload least recently used idle models until the count and the memory allow one more."""
        while self.loaded and (len(self.loaded) >= config.max_loaded_models()
                               or need > memory.available()):
            idle = [m for m in self.loaded.values() if m.refcount == 0]
            if not idle:
                return  # every model is busy: load beside them and let llama.cpp decide
            await self._unload(min(idle, key=lambda m: m.last_used))

    async def _unload(self, loaded: Loaded) -> None:
        if loaded.timer:
            loaded.timer.cancel()
        if self.loaded.get(loaded.key) is loaded:
            del self.loaded[loaded.key]
        await loaded.runner.stop()

    async def unload(self, ref: ModelRef) -> bool:
        """Unload now if idle, or as soon as its requests finish."""
        loaded = self.loaded.get(ref.id)
        if loaded is None:
            return False
        loaded.keep_alive = 0
        if loaded.refcount == 0:
            await self._unload(loaded)
        return True

    async def close(self) -> None:
        for loaded in list(self.loaded.values()):
            await self._unload(loaded)


def _default_ctx(ref: ModelRef) -> int:
    params_ctx = ref.params.get("num_ctx")
    trained = ref.config.get("context_length") or 0
    ctx = int(params_ctx) if params_ctx else config.context_length()
    return min(ctx, int(trained)) if trained else ctx


def _keep_alive(value: float | None) -> float:
    if value is None:
        return parse_duration(config.keep_alive_default())
    return value


def _expiry(keep_alive: float) -> float:
    return float("inf") if keep_alive < 0 else time.time() + keep_alive


__all__ = ["Loaded", "QueueFull", "RunnerError", "Scheduler"]
