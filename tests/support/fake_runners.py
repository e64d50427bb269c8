"""FAKE runners for the scheduler's unit tests: in-process objects, no process, no model.

They stand in for the llama.cpp runner process (`roost.scheduler.runner_main`) where what is
under test is the scheduler's bookkeeping: which runner loads, waits, is evicted, expires or
is dropped, and when. A real model cannot be made to take exactly 0.3 s to load, to hang
while loading, to fail, or to die on cue, and three real models do not fit the test machine
at once, so each fake follows a `Script` instead. Everything else (the Scheduler, the store,
the model references) is the real code. What a real runner does when killed, and the queue
on a real server, are tested against the real model in test_runner_lifecycle.py and
test_queue.py.

`FakeFactory` is passed as `Scheduler(home, runner_factory=...)`. It counts the runners that
are live (from the start of their load until `stop()` returns, as a process would hold
memory), keeps the largest count seen, and can play the system's memory: `available()`
is a total minus the size of every live runner.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

from roost.core import CoreRequest, Done, Piece
from roost.models.names import Name
from roost.models.resolve import ModelRef, resolve
from roost.models.store import CONFIG_MEDIA_TYPE, MODEL_MEDIA_TYPE, Store
from roost.scheduler.runner import Runner, RunnerError, RunnerSpec

_pids = itertools.count(1_000_000)


@dataclass
class Script:
    """How one model's fake runner behaves."""

    load_seconds: float = 0.0
    hang: bool = False  # the load never ends (until cancelled)
    error: str | None = None  # the load fails with this message
    stop_seconds: float = 0.0  # how long stop() takes, as a process that exits slowly
    size: int = 100  # bytes it holds while live, for FakeFactory.available()


class FakeRunner(Runner):
    """A FAKE loaded model: answers `complete` with numbered pieces, and can `die()`."""

    def __init__(self, spec: RunnerSpec, script: Script, factory: FakeFactory) -> None:
        # Runner.__init__ is not called: it needs a process and a socket.
        self.spec = spec
        self.n_ctx = spec.num_ctx
        self.n_parallel = spec.num_parallel
        self.size = script.size
        self.gpu_layers = 0
        self.load_ns = 0
        self.cpu_kernels = spec.cpu_kernels
        self._dead = False
        self._closed = asyncio.Event()
        self._factory = factory
        self._stop_seconds = script.stop_seconds
        self._pid = next(_pids)
        self.stopped = False

    @property
    def alive(self) -> bool:
        return not self._dead

    @property
    def pid(self) -> int:
        return self._pid

    def die(self) -> None:
        """As a runner process killed by a signal: nothing is stopped, the socket just closes."""
        self._dead = True
        self._closed.set()

    async def stop(self) -> None:
        self._dead = True
        self._closed.set()
        if not self.stopped:
            self.stopped = True
            await asyncio.sleep(self._stop_seconds)
            self._factory.gone(self.spec.model_path)

    async def complete(self, req: CoreRequest) -> AsyncIterator[Piece | Done]:
        for n in range(3):
            if self._dead:
                raise RunnerError("the model runner stopped unexpectedly")
            await asyncio.sleep(0.01)
            yield Piece(f"piece {n} ")
        yield Done(reason="stop", prompt_tokens=1, prompt_eval_count=1, prompt_eval_ns=1,
                   eval_count=3, eval_ns=1)


@dataclass
class FakeFactory:
    """Makes FakeRunners by script (per weights file), and counts the live ones."""

    scripts: dict[Path, Script] = field(default_factory=dict)
    total_memory: int = 1 << 40
    live: dict[Path, int] = field(default_factory=dict)
    max_live: int = 0
    specs: list[RunnerSpec] = field(default_factory=list)  # every load started, in order
    runners: list[FakeRunner] = field(default_factory=list)  # every load finished
    abandoned: list[Path] = field(default_factory=list)  # loads cancelled or timed out

    async def __call__(self, spec: RunnerSpec) -> Runner:
        script = self.scripts.get(spec.model_path, Script())
        self.specs.append(spec)
        self._born(spec.model_path)
        try:
            if script.hang:
                await asyncio.Event().wait()
            await asyncio.sleep(script.load_seconds)
            if script.error:
                raise RunnerError(script.error)
        except BaseException as exc:
            if not isinstance(exc, RunnerError):
                self.abandoned.append(spec.model_path)
            self.gone(spec.model_path)  # as Runner.spawn kills and reaps its child
            raise
        runner = FakeRunner(spec, script, self)
        self.runners.append(runner)
        return runner

    def _born(self, weights: Path) -> None:
        self.live[weights] = self.live.get(weights, 0) + 1
        self.max_live = max(self.max_live, self.live_count())

    def gone(self, weights: Path) -> None:
        self.live[weights] -= 1

    def live_count(self) -> int:
        return sum(self.live.values())

    def available(self) -> int:
        """Memory left: the total less every live runner's size (loading ones included)."""
        used = sum(self.scripts.get(w, Script()).size * n for w, n in self.live.items())
        return self.total_memory - used

    def runner_for(self, ref: ModelRef) -> FakeRunner:
        """The latest runner loaded for this model."""
        return next(r for r in reversed(self.runners) if r.spec.model_path == ref.weights)


def fake_models(home: Path, *names: str, context_length: int = 8192) -> list[ModelRef]:
    """Models in a real store whose weights are a few distinct bytes: only FakeRunners load them."""
    store = Store(home)
    refs = []
    for name in names:
        weights = store.write_bytes(f"fake weights of {name}".encode(), MODEL_MEDIA_TYPE)
        cfg = store.write_bytes(json.dumps({"model_format": "gguf", "context_length": context_length,
                                            "model_info": {}}).encode(), CONFIG_MEDIA_TYPE)
        store.put(Name.parse(name), cfg, [weights])
        refs.append(resolve(store, name))
    return refs
