"""Which models are loaded: load on demand, share between requests, unload when idle.

Runners are keyed by weights: a copy, or a model made FROM another with its own system
prompt, shares the runner, while each name keeps its own keep_alive and can be unloaded
alone. Loading is serialised per weights file under a lock; requests to a loaded model never wait on a
lock while they stream. A runner stays loaded while requests hold it and for its
keep_alive after the last one (0: unload at once, negative: never). Past
ROOST_MAX_LOADED_MODELS the least recently used idle model is unloaded first; past
ROOST_MAX_QUEUE waiting requests, new ones are refused (HTTP 503).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from roost import config
from roost.durations import parse_duration
from roost.models.resolve import ModelRef
from roost.scheduler import cpu_kernels, memory
from roost.scheduler.runner import Runner, RunnerError, RunnerSpec

RunnerFactory = Callable[[RunnerSpec], Awaitable[Runner]]


class QueueFull(RuntimeError):
    pass


@dataclass
class Loaded:
    """One model name held on a runner; names that share weights share the runner."""

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
        return name_key(self.ref)


def name_key(ref: ModelRef) -> str:
    return "/".join(ref.name.key)


class Scheduler:
    def __init__(self, home: Path | None = None, log: IO[bytes] | None = None,
                 runner_factory: RunnerFactory | None = None) -> None:
        self.loaded: dict[str, Loaded] = {}  # by model name
        self.runners: dict[Path, Runner] = {}  # by weights: a copy or a variant shares it
        self._locks: dict[Path, asyncio.Lock] = {}
        self._idle: dict[Path, asyncio.Event] = {}  # set when a runner's last request ends
        self._tasks: set[asyncio.Future[None]] = set()
        self._log = log
        home = home or config.home()
        self._factory = runner_factory or (
            lambda spec: cpu_kernels.spawn(spec, home, lambda s: Runner.spawn(s, self._log)))
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
        queued = sum(max(0, self._users(r) - r.n_parallel) for r in self.runners.values())
        return self._pending + queued

    def _on(self, runner: Runner) -> list[Loaded]:
        return [m for m in self.loaded.values() if m.runner is runner]

    def _users(self, runner: Runner) -> int:
        return sum(m.refcount for m in self._on(runner))

    async def _acquire(self, ref: ModelRef, num_ctx: int | None,
                       keep_alive: float | None) -> Loaded:
        weights = ref.weights
        async with self._locks.setdefault(weights, asyncio.Lock()):
            want_ctx = _context(ref, num_ctx)
            runner = self.runners.get(weights)
            while runner and runner.alive and want_ctx > runner.n_ctx and self._users(runner):
                # A bigger context needs a reload: wait until the runner's requests are done,
                # as Ollama does, rather than serve this one in a context too small for it.
                await self._idle.setdefault(weights, asyncio.Event()).wait()
                runner = self.runners.get(weights)
            if runner and (not runner.alive or want_ctx > runner.n_ctx):
                await self._stop_runner(runner)
                runner = None
            if runner is None:
                spec = RunnerSpec(weights, want_ctx, config.num_parallel(), config.num_threads(),
                                  load_timeout=config.load_timeout())
                await self._make_room(memory.estimate(weights, ref.config, want_ctx,
                                                      spec.num_parallel))
                runner = self.runners[weights] = await self._factory(spec)
            loaded = self.loaded.get(name_key(ref))
            if loaded is None or loaded.runner is not runner:
                loaded = Loaded(ref, runner, runner.n_ctx, _keep_alive(keep_alive))
                self.loaded[loaded.key] = loaded
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
        if not self._users(loaded.runner):
            for weights in [w for w, r in self.runners.items() if r is loaded.runner]:
                event = self._idle.pop(weights, None)
                if event is not None:
                    event.set()
        if not loaded.runner.alive:
            self._background(self._unload(loaded))
            return
        loaded.expires_at = _expiry(loaded.keep_alive)
        if loaded.keep_alive >= 0:
            loop = asyncio.get_running_loop()
            loaded.timer = loop.call_later(
                loaded.keep_alive, lambda: self._background(self._expire(loaded))
            )

    def _background(self, work: Coroutine[Any, Any, None]) -> None:
        """A task kept until it ends: asyncio holds only weak references to running tasks."""
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _expire(self, loaded: Loaded) -> None:
        if loaded.refcount == 0 and self.loaded.get(loaded.key) is loaded:
            await self._unload(loaded)

    async def _make_room(self, need: int) -> None:
        """Unload least recently used idle runners until the count and the memory allow one more."""
        while self.runners and (len(self.runners) >= config.max_loaded_models()
                                or need > memory.available()):
            idle = [r for r in self.runners.values() if self._users(r) == 0]
            if not idle:
                return  # every model is busy: load beside them and let llama.cpp decide
            await self._stop_runner(min(idle, key=self._last_used))

    def _last_used(self, runner: Runner) -> float:
        return max((m.last_used for m in self._on(runner)), default=0.0)

    async def _unload(self, loaded: Loaded) -> None:
        """Forget one name; stop its runner when no other name is on it."""
        if loaded.timer:
            loaded.timer.cancel()
        if self.loaded.get(loaded.key) is loaded:
            del self.loaded[loaded.key]
        if not self._on(loaded.runner):
            await self._stop_runner(loaded.runner)

    async def _stop_runner(self, runner: Runner) -> None:
        for m in self._on(runner):
            if m.timer:
                m.timer.cancel()
            del self.loaded[m.key]
        for weights, r in list(self.runners.items()):
            if r is runner:
                del self.runners[weights]
        await runner.stop()

    async def unload(self, ref: ModelRef) -> bool:
        """Unload this name now if idle, or as soon as its requests finish."""
        loaded = self.loaded.get(name_key(ref))
        if loaded is None:
            return False
        loaded.keep_alive = 0
        if loaded.refcount == 0:
            await self._unload(loaded)
        return True

    async def close(self) -> None:
        for runner in list(self.runners.values()):
            await self._stop_runner(runner)


def _context(ref: ModelRef, num_ctx: int | None) -> int:
    """The context asked for (else the model's or the server's default), within the trained one."""
    params_ctx = ref.params.get("num_ctx")
    trained = int(ref.config.get("context_length") or 0)
    ctx = num_ctx or (int(params_ctx) if params_ctx else config.context_length())
    return min(ctx, trained) if trained else ctx


def _keep_alive(value: float | None) -> float:
    if value is None:
        return parse_duration(config.keep_alive_default())
    return value


def _expiry(keep_alive: float) -> float:
    return float("inf") if keep_alive < 0 else time.time() + keep_alive


__all__ = ["Loaded", "QueueFull", "RunnerError", "Scheduler"]
