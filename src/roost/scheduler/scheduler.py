"""Which models are loaded: load on demand, share between requests, unload when idle.

One state machine for every model. Each runner lives in a `Slot` that moves
QUEUED → LOADING → READY (→ DRAINING) → STOPPING → GONE, and every transition is a plain,
synchronous method. On the one event loop nothing can run in the middle of a synchronous
method, so the loop itself is the lock, for all models at once, and no lock is ever held
across an await: a load that hangs holds nothing but its own slot. The slow work (starting a
runner, stopping one) runs in tasks the scheduler keeps, which report back by a transition.

- A request for a READY runner whose context is large enough takes it at once, waiting for
  nothing (another model's load included).
- Otherwise it waits on the slot for its weights, queueing one if there is none. Queued slots
  are admitted in order while ROOST_MAX_LOADED_MODELS (loading and stopping runners count) and
  the memory estimate allow. To make room the least recently used idle runners are stopped; a
  runner picked for that leaves `loaded` in the same step, so no request can take it meanwhile.
  When every runner is busy a load waits for one to go idle; when nothing at all is loaded it
  goes ahead whatever the memory estimate says, and llama.cpp decides.
- A runner whose context is too small for a request drains (finishes the requests it holds,
  takes no new ones) and a bigger one is loaded once it is gone, as Ollama does.
- keep_alive is recorded per name in the order requests arrive, and an unload (keep_alive 0,
  `roost stop`) is one more such record: sent while the model loads, it is applied when the
  requests that were waiting for it end. A runner stays loaded while requests hold it and for
  its keep_alive after the last one (0: unload at once, negative: never).
- A runner that dies leaves `loaded` at once, even with no request (its requests get the
  error from the runner); a load slower than ROOST_LOAD_TIMEOUT is killed; close() cancels
  every timer and task.

Runners are keyed by weights and LoRA adapters: a copy, or a model made FROM another with its own
system prompt, shares the runner, while each name keeps its own keep_alive and can be unloaded
alone; a model with other adapters gets a runner of its own (adapters are set per context). Past
ROOST_MAX_QUEUE waiting requests, new ones are refused (HTTP 503).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from roost import config
from roost.durations import parse_duration
from roost.models.resolve import ModelRef
from roost.scheduler import cpu_kernels, memory
from roost.scheduler.runner import LoadRefused, Runner, RunnerError, RunnerSpec

log = logging.getLogger("roost.scheduler")

RunnerFactory = Callable[[RunnerSpec], Awaitable[Runner]]
RunnerKey = tuple[Path, tuple[Path, ...]]  # weights and adapters: what one runner can serve


class QueueFull(RuntimeError):
    pass


class State(enum.Enum):
    QUEUED = "queued"  # wanted; waits for room, or for the old runner of its weights to go
    LOADING = "loading"  # the runner is starting
    READY = "ready"  # serving, and taking new requests
    DRAINING = "draining"  # serving the requests it holds; stops when they end
    STOPPING = "stopping"  # its process is being stopped; still counts against the limits
    GONE = "gone"


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


def runner_key(ref: ModelRef) -> RunnerKey:
    """Weights and adapters, each checked (a linked file that changed is a NotFound)."""
    return ref.weights, tuple(ref.adapters)


@dataclass(eq=False)
class Slot:
    """One runner's life, from the first request that wants it to the exit of its process."""

    weights: Path
    config: dict[str, Any]  # the model's metadata, for the memory estimate
    num_ctx: int  # asked for; the runner's own once ready
    num_parallel: int
    need: int = 0  # estimated bytes, counted from the start of the load
    state: State = State.QUEUED
    runner: Runner | None = None
    names: dict[str, Loaded] = field(default_factory=dict)
    waiting: int = 0  # requests waiting for this slot to be ready
    last_used: float = field(default_factory=time.monotonic)
    ready: asyncio.Future[None] = field(default_factory=lambda: _quiet_future())
    task: asyncio.Task[None] | None = None  # the load, then the stop
    adapters: tuple[Path, ...] = ()  # LoRA GGUFs applied on this runner

    @property
    def key(self) -> RunnerKey:
        return self.weights, self.adapters

    @property
    def alive(self) -> bool:
        return self.runner is not None and self.runner.alive

    def holding(self) -> int:
        return sum(m.refcount for m in self.names.values())

    def users(self) -> int:
        return self.waiting + self.holding()


@dataclass
class _Asked:
    """What the requests in flight for one name asked, in the order they arrived."""

    keep_alive: float | None = None  # None: nobody asked; 0 also after an unload
    holders: int = 0


class Scheduler:
    """The loaded models of one server: `use` holds one for a request; see the module doc."""

    def __init__(self, home: Path | None = None, log: IO[bytes] | None = None,
                 runner_factory: RunnerFactory | None = None) -> None:
        self._slots: dict[RunnerKey, Slot] = {}  # the slot new requests for these weights use
        self._leaving: list[Slot] = []  # draining or stopping: still a process, no new requests
        self._queue: list[Slot] = []  # QUEUED slots, first come first admitted
        self._asked: dict[str, _Asked] = {}  # by name, while requests for it are in flight
        self._tasks: set[asyncio.Task[None]] = set()
        self._pending = 0
        self._closing = False
        self._log = log
        self.runner_crashes = 0  # runners that died while loaded (/metrics)
        home = home or config.home()
        self._factory = runner_factory or (
            lambda spec: cpu_kernels.spawn(spec, home, lambda s: Runner.spawn(s, self._log)))

    # -- what callers see --------------------------------------------------------------------

    @property
    def loaded(self) -> dict[str, Loaded]:
        """Names on a running runner, by name (what /api/ps lists)."""
        return {key: m for s in self._serving() for key, m in s.names.items()}

    @property
    def runners(self) -> dict[Path, Runner]:
        return {s.weights: s.runner for s in self._serving() if s.runner is not None}

    def slots(self) -> list[Slot]:
        """Every slot with a process or a place in the queue: for tests and diagnostics."""
        return [*self._slots.values(), *self._leaving]

    @contextlib.asynccontextmanager
    async def use(self, ref: ModelRef, num_ctx: int | None,
                  keep_alive: float | None) -> AsyncIterator[Loaded]:
        """Hold a loaded model for the duration of one request."""
        self.check_queue()
        key = name_key(ref)
        asked = self._arrive(key, keep_alive)
        try:
            self._pending += 1
            try:
                loaded = await self._acquire(ref, _context(ref, num_ctx), asked)
            finally:
                self._pending -= 1
            try:
                yield loaded
            finally:
                self._release(loaded, asked)
        finally:
            self._depart(key, asked)

    def check_queue(self) -> None:
        """Refuse now if a request would be refused: callers may ask before costly work."""
        if self._closing:
            raise RunnerError("the server is shutting down", 503)
        if self.waiting() >= config.max_queue():
            raise QueueFull("server busy, please try again.  maximum pending requests exceeded")

    def waiting(self) -> int:
        """Requests not yet decoding: loading, or queued behind a runner's busy slots."""
        queued = sum(max(0, s.holding() - s.runner.n_parallel)
                     for s in self._serving() if s.runner is not None)
        return self._pending + queued

    async def unload(self, ref: ModelRef) -> bool:
        """Unload this name now if idle, or as soon as its requests finish (loading included)."""
        key = name_key(ref)
        asked = self._asked.get(key)
        if asked is not None:
            asked.keep_alive = 0
        found = asked is not None
        stops = []
        for slot in self._serving():
            loaded = slot.names.get(key)
            if loaded is not None:
                found = True
                loaded.keep_alive = 0
                if loaded.refcount == 0:
                    self._drop(slot, loaded)
                if slot.state is State.STOPPING and slot.task is not None:
                    stops.append(slot.task)
        self._admit()
        if stops:  # so that a caller that checks right after sees the process gone
            await asyncio.wait(stops)
        return found

    async def close(self) -> None:
        """Stop every runner, cancel every load and timer, and wait for every task to end."""
        self._closing = True
        while self._tasks or self._queue or self._serving():
            for slot in list(self._queue):
                self._abandon(slot, RunnerError("the server is shutting down", 503))
            for slot in list(self._slots.values()):
                if slot.state is State.LOADING and slot.task is not None:
                    slot.task.cancel()
            for slot in self._serving():
                self._stop(slot)
            if self._tasks:
                await asyncio.gather(*list(self._tasks), return_exceptions=True)

    # -- a request's way through --------------------------------------------------------------

    def _arrive(self, key: str, keep_alive: float | None) -> _Asked:
        asked = self._asked.setdefault(key, _Asked())
        asked.holders += 1
        if keep_alive is not None:
            asked.keep_alive = keep_alive
        return asked

    def _depart(self, key: str, asked: _Asked) -> None:
        asked.holders -= 1
        if asked.holders == 0 and self._asked.get(key) is asked:
            del self._asked[key]

    async def _acquire(self, ref: ModelRef, want: int, asked: _Asked) -> Loaded:
        while True:
            slot = self._slots.get(runner_key(ref))
            if slot is not None and slot.state is State.READY:
                if not slot.alive:
                    self._stop(slot)
                    continue
                if slot.num_ctx >= want:
                    return self._hold(slot, ref, asked)  # the fast path: no wait at all
                slot = self._replace(slot, ref, want)
            elif slot is None:
                slot = self._enqueue(ref, want)
            elif slot.state is State.QUEUED and slot.num_ctx < want:
                self._grow(slot, want)
            # A runner started with our context serves us, whatever n_ctx it reports.
            ours = slot.num_ctx >= want
            await self._wait(slot)
            if slot.state not in (State.READY, State.DRAINING) or not slot.alive:
                raise RunnerError("the model runner stopped unexpectedly")
            if ours:
                return self._hold(slot, ref, asked)

    async def _wait(self, slot: Slot) -> None:
        """Wait for the slot's load; the last waiter to leave cancels it."""
        slot.waiting += 1
        try:
            await asyncio.shield(slot.ready)
        except asyncio.CancelledError:
            slot.waiting -= 1
            if slot.waiting == 0:
                self._abandon(slot, RunnerError("every request for this load was cancelled", 499))
            raise
        except RunnerError as exc:
            slot.waiting -= 1
            kind = LoadRefused if isinstance(exc, LoadRefused) else RunnerError  # a copy per waiter
            raise kind(str(exc), exc.status) from None
        slot.waiting -= 1

    def _hold(self, slot: Slot, ref: ModelRef, asked: _Asked) -> Loaded:
        assert slot.runner is not None
        key = name_key(ref)
        loaded = slot.names.get(key)
        if loaded is None:
            keep = asked.keep_alive if asked.keep_alive is not None else _keep_alive(None)
            loaded = slot.names[key] = Loaded(ref, slot.runner, slot.runner.n_ctx, keep)
        else:
            loaded.ref = ref
            if asked.keep_alive is not None:
                loaded.keep_alive = asked.keep_alive
        _cancel_timer(loaded)
        loaded.refcount += 1
        loaded.last_used = slot.last_used = time.monotonic()
        loaded.expires_at = _expiry(loaded.keep_alive)
        return loaded

    def _release(self, loaded: Loaded, asked: _Asked) -> None:
        loaded.refcount -= 1
        loaded.last_used = time.monotonic()
        if asked.keep_alive is not None:  # the latest asked, an unload included
            loaded.keep_alive = asked.keep_alive
        slot = self._slot_of(loaded)
        if slot is None:
            return  # its runner died or was stopped meanwhile
        slot.last_used = loaded.last_used
        if not slot.alive:
            self._stop(slot)
        elif loaded.refcount == 0:
            self._idle(slot, loaded)
        if slot.state is State.DRAINING and slot.users() == 0:
            self._stop(slot)
        self._admit()

    def _idle(self, slot: Slot, loaded: Loaded) -> None:
        """A name's last request ended: start its keep_alive."""
        loaded.expires_at = _expiry(loaded.keep_alive)
        if loaded.keep_alive == 0:
            self._drop(slot, loaded)
        elif loaded.keep_alive > 0:
            loaded.timer = asyncio.get_running_loop().call_later(
                loaded.keep_alive, self._expire, slot, loaded)

    def _expire(self, slot: Slot, loaded: Loaded) -> None:
        loaded.timer = None
        if loaded.refcount == 0:
            self._drop(slot, loaded)
            self._admit()

    def _drop(self, slot: Slot, loaded: Loaded) -> None:
        """Forget one name; stop its runner when no other name or request is on it."""
        _cancel_timer(loaded)
        if slot.names.get(loaded.key) is loaded:
            del slot.names[loaded.key]
        if not slot.names and slot.users() == 0:
            self._stop(slot)

    def _slot_of(self, loaded: Loaded) -> Slot | None:
        return next((s for s in self._serving() if s.names.get(loaded.key) is loaded), None)

    def _serving(self) -> list[Slot]:
        return [s for s in self.slots() if s.state in (State.READY, State.DRAINING)]

    # -- loading ------------------------------------------------------------------------------

    def _enqueue(self, ref: ModelRef, want: int) -> Slot:
        weights, adapters = runner_key(ref)
        slot = Slot(weights, ref.config, 0, config.num_parallel(), adapters=adapters)
        self._grow(slot, want)
        self._slots[slot.key] = slot
        self._queue.append(slot)
        self._admit()
        return slot

    def _grow(self, slot: Slot, want: int) -> None:
        slot.num_ctx = want
        slot.need = memory.estimate(slot.weights, slot.config, want, slot.num_parallel)

    def _replace(self, slot: Slot, ref: ModelRef, want: int) -> Slot:
        """Too small a context: drain this runner, and queue a bigger one behind it."""
        slot.state = State.DRAINING
        del self._slots[slot.key]
        self._leaving.append(slot)
        if slot.users() == 0:
            self._stop(slot)
        return self._enqueue(ref, want)

    def _admit(self) -> None:
        """Start the queued loads that have room, in order, stopping idle runners for it."""
        if self._closing:
            return
        for slot in list(self._queue):
            if any(s.key == slot.key for s in self._leaving):
                continue  # its weights' old runner is still draining or stopping
            if not self._make_room(slot.need):
                break
            self._queue.remove(slot)
            slot.state = State.LOADING
            slot.task = self._background(self._load(slot))

    def _make_room(self, need: int) -> bool:
        while not self._fits(need, projected=True):
            victim = self._least_recently_used_idle()
            if victim is None:
                break
            log.info("unloading %s to make room", victim.weights.name)
            self._stop(victim)
        # With nothing loaded, loading or stopping, load whatever the estimate says.
        return self._fits(need, projected=False) or all(s.state is State.QUEUED for s in self.slots())

    def _fits(self, need: int, projected: bool) -> bool:
        """Room for one more runner now, or once the runners being stopped have exited."""
        live = [s for s in self._slots.values() if s.state in (State.LOADING, State.READY)]
        leaving = [s for s in self._leaving if not projected or s.state is State.DRAINING]
        if len(live) + len(leaving) >= config.max_loaded_models():
            return False
        free = memory.available() - sum(s.need for s in live if s.state is State.LOADING)
        if projected:
            free += sum(s.need for s in self._leaving if s.state is State.STOPPING)
        return need <= free

    def _least_recently_used_idle(self) -> Slot | None:
        idle = [s for s in self._slots.values() if s.state is State.READY and s.users() == 0]
        return min(idle, key=lambda s: s.last_used, default=None)

    async def _load(self, slot: Slot) -> None:
        spec = RunnerSpec(slot.weights, slot.num_ctx, slot.num_parallel, config.num_threads(),
                          load_timeout=config.load_timeout(), adapters=slot.adapters)
        try:
            # Bounds the whole load, CPU-kernel fallbacks included; a cancelled spawn kills its child.
            async with asyncio.timeout(spec.load_timeout):
                runner = await self._factory(spec)
        except asyncio.CancelledError:
            self._failed(slot, RunnerError("the load was cancelled", 503))
            raise
        except TimeoutError:
            self._failed(slot, RunnerError(f"the model did not load within {spec.load_timeout:g} s "
                                           "(ROOST_LOAD_TIMEOUT)", 504))
        except RunnerError as exc:
            self._failed(slot, exc)
        except Exception as exc:
            log.exception("loading %s failed", slot.weights)
            self._failed(slot, RunnerError(f"the model failed to load: {exc}"))
        else:
            self._ready(slot, runner)

    def _ready(self, slot: Slot, runner: Runner) -> None:
        slot.runner = runner
        slot.num_ctx = runner.n_ctx
        slot.state = State.READY
        slot.last_used = time.monotonic()
        slot.ready.set_result(None)
        self._background(self._watch(slot))
        if self._closing or slot.waiting == 0:  # nobody is left to use it
            self._stop(slot)
        self._admit()

    def _failed(self, slot: Slot, error: RunnerError) -> None:
        slot.state = State.GONE
        if self._slots.get(slot.key) is slot:
            del self._slots[slot.key]
        if not slot.ready.done():
            slot.ready.set_exception(error)
        self._admit()

    def _abandon(self, slot: Slot, error: RunnerError) -> None:
        """Nobody waits for this load any more: forget it if queued, cancel it if loading."""
        if slot.state is State.QUEUED:
            self._queue.remove(slot)
            self._failed(slot, error)
        elif slot.state is State.LOADING and slot.task is not None:
            slot.task.cancel()
        elif slot.state is State.READY and not slot.names and slot.users() == 0:
            self._stop(slot)  # loaded just as its last request left

    async def _watch(self, slot: Slot) -> None:
        """Drop a runner from `loaded` as soon as it dies, with or without a request on it."""
        assert slot.runner is not None
        await slot.runner.wait_closed()
        if slot.state in (State.READY, State.DRAINING):
            log.warning("the model runner for %s stopped unexpectedly (pid %s)",
                        slot.weights.name, getattr(slot.runner, "pid", "?"))
            self.runner_crashes += 1
            self._stop(slot)

    # -- stopping -----------------------------------------------------------------------------

    def _stop(self, slot: Slot) -> None:
        """Take the runner away from every name at once, then stop its process in a task."""
        if slot.state in (State.STOPPING, State.GONE):
            return
        slot.state = State.STOPPING
        for loaded in slot.names.values():
            _cancel_timer(loaded)
        slot.names.clear()
        if self._slots.get(slot.key) is slot:
            del self._slots[slot.key]
        if slot not in self._leaving:
            self._leaving.append(slot)
        slot.task = self._background(self._finish_stop(slot))

    async def _finish_stop(self, slot: Slot) -> None:
        try:
            if slot.runner is not None:
                await slot.runner.stop()  # and reap the process
        finally:
            slot.state = State.GONE
            self._leaving.remove(slot)
            self._admit()

    def _background(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """A task kept until it ends: asyncio holds only weak references to running tasks."""
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("scheduler task failed", exc_info=task.exception())


def _quiet_future() -> asyncio.Future[None]:
    """A load's outcome; an error nobody waited for is not reported as never retrieved."""
    future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    future.add_done_callback(lambda f: f.cancelled() or f.exception())
    return future


def _cancel_timer(loaded: Loaded) -> None:
    if loaded.timer is not None:
        loaded.timer.cancel()
        loaded.timer = None


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


__all__ = ["Loaded", "QueueFull", "RunnerError", "Scheduler", "Slot", "State"]
