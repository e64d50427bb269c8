"""The scheduler as one state machine: eviction, keep_alive, limits, timeouts, deaths, queue.

These run the real Scheduler with FAKE runners (tests.support.fake_runners): in-process
objects standing in for the llama.cpp runner process, so that a load can take a set time,
hang, or a runner die on cue, and so that several models fit at once. The same behaviours
against the real model and real processes are in test_runner_lifecycle.py and test_queue.py.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest

from roost.models.resolve import ModelRef
from roost.scheduler import memory
from roost.scheduler.scheduler import QueueFull, RunnerError, Scheduler, State
from tests.support.fake_runners import FakeFactory, Script, fake_models


def run(scenario: Coroutine[Any, Any, None], limit: float = 20) -> None:
    """Run one scenario on a fresh event loop; a hang fails the test instead of blocking it."""
    asyncio.run(asyncio.wait_for(scenario, limit))


def setup(tmp_path: Path, n: int, scripts: dict[int, Script] | None = None,
          **factory: Any) -> tuple[Scheduler, FakeFactory, list[ModelRef]]:
    refs = fake_models(tmp_path, *[f"m{i}:1" for i in range(n)])
    fake = FakeFactory({refs[i].weights: s for i, s in (scripts or {}).items()}, **factory)
    return Scheduler(tmp_path, runner_factory=fake), fake, refs


async def hold(sched: Scheduler, ref: ModelRef, seconds: float = 0.0,
               keep_alive: float | None = None, num_ctx: int | None = None) -> int:
    """One request: take the model, keep it `seconds`; returns the runner's pid."""
    async with sched.use(ref, num_ctx, keep_alive) as loaded:
        await asyncio.sleep(seconds)
        return loaded.runner.pid


def names(sched: Scheduler) -> set[str]:
    return {m.ref.name.model for m in sched.loaded.values()}


async def until(check: Callable[[], bool], limit: float = 5) -> None:
    deadline = time.monotonic() + limit
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.005)


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("ROOST_MAX_LOADED_MODELS", "ROOST_MAX_QUEUE", "ROOST_NUM_PARALLEL",
                 "ROOST_KEEP_ALIVE", "ROOST_LOAD_TIMEOUT", "ROOST_CONTEXT_LENGTH"):
        monkeypatch.delenv(name, raising=False)


def test_least_recently_used_idle_model_is_evicted(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROOST_MAX_LOADED_MODELS", "2")
    sched, fake, (a, b, c) = setup(tmp_path, 3)

    async def scenario() -> None:
        await hold(sched, a)
        await hold(sched, b)
        await hold(sched, a)  # b is now the least recently used
        await hold(sched, c)
        assert names(sched) == {"m0", "m2"}
        assert fake.runner_for(b).stopped and not fake.runner_for(a).stopped
        assert fake.max_live == 2
        await sched.close()

    run(scenario())


def test_keep_alive_expires_and_zero_unloads_at_once(tmp_path: Path) -> None:
    sched, fake, (a, b, c) = setup(tmp_path, 3)

    async def scenario() -> None:
        await hold(sched, a, keep_alive=0.2)
        await hold(sched, b, keep_alive=0)
        await hold(sched, c, keep_alive=-1)
        assert names(sched) == {"m0", "m2"}  # b went at once
        assert sched.loaded["registry.ollama.ai/library/m2/1"].expires_at == float("inf")
        started = time.monotonic()
        await until(lambda: "m0" not in names(sched))
        assert 0.15 < time.monotonic() - started < 2
        await until(lambda: fake.runner_for(a).stopped)
        await asyncio.sleep(0.3)
        assert names(sched) == {"m2"}  # forever means forever
        await sched.close()
        assert fake.live_count() == 0 and not sched._tasks

    run(scenario())


def test_concurrent_loads_never_exceed_max_loaded_models(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Many requests for five models at once, many times: never more than 2 runners live."""
    monkeypatch.setenv("ROOST_MAX_LOADED_MODELS", "2")
    monkeypatch.setenv("ROOST_NUM_PARALLEL", "2")
    rng = random.Random(7)
    scripts = {i: Script(load_seconds=rng.uniform(0, 0.02)) for i in range(5)}
    sched, fake, refs = setup(tmp_path, 5, scripts)
    trials, seen = 30, 0

    async def watch() -> None:
        nonlocal seen
        while True:
            seen = max(seen, len([s for s in sched.slots() if s.state is not State.QUEUED]))
            await asyncio.sleep(0)

    async def scenario() -> None:
        watcher = asyncio.create_task(watch())
        for _ in range(trials):
            requests = [hold(sched, rng.choice(refs), rng.uniform(0, 0.01),
                             keep_alive=rng.choice([None, 0, 0.01])) for _ in range(12)]
            await asyncio.gather(*requests)
        watcher.cancel()
        await sched.close()

    run(scenario(), limit=60)
    assert fake.max_live == 2 and seen <= 2
    assert len(fake.specs) > trials  # it did load and evict, many times


def test_memory_estimate_evicts_and_waits_for_a_busy_model(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """1000 bytes of memory, 400 a model: two fit; a third evicts the idle one, or waits."""
    sched, fake, (a, b, c) = setup(tmp_path, 3, {i: Script(size=400) for i in range(3)},
                                   total_memory=1000)
    monkeypatch.setattr(memory, "available", fake.available)
    monkeypatch.setattr(memory, "estimate", lambda *_: 400)

    async def scenario() -> None:
        await hold(sched, a)
        await hold(sched, b)
        await hold(sched, c)  # a is the least recently used
        assert names(sched) == {"m1", "m2"} and fake.runner_for(a).stopped
        busy = [asyncio.create_task(hold(sched, ref, 0.3)) for ref in (b, c)]
        await asyncio.sleep(0.05)
        waiting = asyncio.create_task(hold(sched, a))
        await asyncio.sleep(0.1)
        assert not waiting.done() and "m0" not in names(sched)  # both others are busy
        await asyncio.gather(*busy, waiting)
        assert "m0" in names(sched) and fake.max_live == 2
        await sched.close()

    run(scenario())


def test_unload_during_a_load_is_applied_when_its_requests_end(tmp_path: Path) -> None:
    sched, fake, (a, b) = setup(tmp_path, 2, {0: Script(load_seconds=0.2), 1: Script(load_seconds=0.2)})

    async def scenario() -> None:
        first = asyncio.create_task(hold(sched, a, 0.05, keep_alive=300))
        await asyncio.sleep(0.05)
        assert names(sched) == set()  # still loading
        assert await sched.unload(a)  # as keep_alive 0, `roost stop` or /api/generate do
        await first
        await until(lambda: fake.runner_for(a).stopped)
        assert "m0" not in names(sched)
        # Order counts: a request sent after the unload, asking to stay, stays.
        second = asyncio.create_task(hold(sched, b, keep_alive=300))
        await asyncio.sleep(0.05)
        assert await sched.unload(b)
        await hold(sched, b, keep_alive=300)
        await second
        assert "m1" in names(sched)
        await sched.close()

    run(scenario())


def test_a_hanging_load_times_out_while_other_models_load(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROOST_LOAD_TIMEOUT", "0.5s")
    sched, fake, (a, b, c) = setup(tmp_path, 3, {0: Script(hang=True)})

    async def scenario() -> None:
        started = time.monotonic()
        hung = asyncio.create_task(hold(sched, a))
        await asyncio.sleep(0.05)
        await hold(sched, b)
        await hold(sched, c)
        assert time.monotonic() - started < 0.3 and names(sched) == {"m1", "m2"}
        with pytest.raises(RunnerError, match="ROOST_LOAD_TIMEOUT") as err:
            await hung
        assert err.value.status == 504 and 0.45 < time.monotonic() - started < 2
        assert fake.abandoned == [a.weights] and fake.live[a.weights] == 0
        await sched.close()

    run(scenario())


def test_a_ready_model_does_not_wait_behind_another_models_load(tmp_path: Path) -> None:
    sched, _, (a, b) = setup(tmp_path, 2, {1: Script(load_seconds=1.0)})

    async def scenario() -> None:
        await hold(sched, a)
        slow = asyncio.create_task(hold(sched, b))
        await asyncio.sleep(0.05)
        started = time.monotonic()
        await hold(sched, a)
        assert time.monotonic() - started < 0.05 and not slow.done()
        await slow
        await sched.close()

    run(scenario())


def test_a_dead_runner_is_dropped_without_a_request_and_reloaded_next(tmp_path: Path) -> None:
    sched, fake, (a,) = setup(tmp_path, 1)

    async def scenario() -> None:
        first = await hold(sched, a, keep_alive=-1)
        fake.runner_for(a).die()
        await until(lambda: names(sched) == set() and fake.runner_for(a).stopped, limit=0.5)
        assert not sched.runners
        assert await hold(sched, a) != first
        # Dying under a request: the request gets the runner's error, the name leaves at once.
        with pytest.raises(RunnerError):
            async with sched.use(a, None, None) as loaded:
                fake.runner_for(a).die()
                async for _ in loaded.runner.complete(None):  # type: ignore[arg-type]
                    pass
        await until(lambda: names(sched) == set(), limit=0.5)
        await sched.close()
        assert fake.live_count() == 0

    run(scenario())


def test_an_evicted_runner_is_never_handed_to_a_request(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """A slow stop leaves a window; a request for the model being stopped gets a new runner."""
    monkeypatch.setenv("ROOST_MAX_LOADED_MODELS", "1")
    sched, fake, (a, b) = setup(tmp_path, 2, {0: Script(stop_seconds=0.2)})

    async def scenario() -> None:
        old = await hold(sched, a)
        for_b = asyncio.create_task(hold(sched, b, 0.1))
        await asyncio.sleep(0.02)  # a is stopping for b
        assert names(sched) == set()
        again = await hold(sched, a)
        await for_b
        assert again != old and fake.runner_for(a).pid == again
        assert fake.max_live == 1
        await sched.close()

    run(scenario())


def test_a_bigger_context_drains_the_runner_and_later_requests_join_the_new_one(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROOST_CONTEXT_LENGTH", "2048")
    sched, fake, (a,) = setup(tmp_path, 1)

    async def scenario() -> None:
        busy = asyncio.create_task(hold(sched, a, 0.2))
        await asyncio.sleep(0.02)
        small = fake.runner_for(a).pid
        big = asyncio.create_task(hold(sched, a, num_ctx=4096))
        await asyncio.sleep(0.02)
        later = asyncio.create_task(hold(sched, a))  # 2048 fits the new one: waits for it
        assert await busy == small
        assert await big == await later != small
        assert fake.runner_for(a).n_ctx == 4096 and fake.max_live == 1
        await sched.close()

    run(scenario())


def test_the_queue_limit_refuses_at_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROOST_MAX_QUEUE", "2")
    monkeypatch.setenv("ROOST_NUM_PARALLEL", "1")
    sched, _, (a,) = setup(tmp_path, 1, {0: Script(load_seconds=0.2)})

    async def scenario() -> None:
        loading = [asyncio.create_task(hold(sched, a, 0.1)) for _ in range(2)]
        await asyncio.sleep(0.02)
        with pytest.raises(QueueFull):
            await hold(sched, a)
        await asyncio.gather(*loading)
        # Loaded, one sequence slot: one request decodes, two wait, the fourth is refused.
        held = [asyncio.create_task(hold(sched, a, 0.1)) for _ in range(3)]
        await asyncio.sleep(0.02)
        assert sched.waiting() == 2
        with pytest.raises(QueueFull):
            await hold(sched, a)
        await asyncio.gather(*held)
        assert sched.waiting() == 0
        await sched.close()

    run(scenario())


def test_the_last_request_to_leave_cancels_the_load(tmp_path: Path) -> None:
    sched, fake, (a,) = setup(tmp_path, 1, {0: Script(hang=True)})

    async def scenario() -> None:
        waiters = [asyncio.create_task(hold(sched, a)) for _ in range(2)]
        await asyncio.sleep(0.02)
        waiters[0].cancel()
        await asyncio.sleep(0.02)
        assert fake.abandoned == []  # one request still waits
        waiters[1].cancel()
        await until(lambda: fake.abandoned == [a.weights])
        assert fake.live_count() == 0 and not sched.slots()
        await sched.close()

    run(scenario())


def test_close_cancels_loads_timers_and_tasks(tmp_path: Path) -> None:
    sched, fake, (a, b) = setup(tmp_path, 2, {1: Script(hang=True)})

    async def scenario() -> None:
        await hold(sched, a, keep_alive=60)
        timer = sched.loaded["registry.ollama.ai/library/m0/1"].timer
        assert timer is not None
        hung = asyncio.create_task(hold(sched, b))
        await asyncio.sleep(0.02)
        await sched.close()
        with pytest.raises(RunnerError):
            await hung
        assert timer.cancelled() and not sched._tasks and not sched.slots()
        assert fake.live_count() == 0 and fake.abandoned == [b.weights]
        with pytest.raises(RunnerError, match="shutting down"):
            await hold(sched, a)

    run(scenario())
