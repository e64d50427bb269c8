"""Templates rendered in real worker processes: same output as in-process, bounded memory and time."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from roost.chat import sandbox, template
from roost.chat.sandbox import Pool, TemplateRenderError
from tests.chat.test_template import HOSTILE, NESTED, QWEN25, STRFTIME, TOOL_CHAT, TOOLS

HI = [{"role": "user", "content": "hi"}]
CHATML_HI = "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
# Needs gigabytes, but each step is small enough that only the worker's memory limit stops it.
MEMORY_BOMB = ("{% set ns = namespace(l=[]) %}{% for i in range(100000) %}"
               "{% set ns.l = [ns.l, 'x' * 8000000 ~ i] %}{% endfor %}")


def workers(parent: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(parent), "-f", "roost.chat.render_worker"],
                         capture_output=True, text=True)
    return [int(p) for p in out.stdout.split()]


def gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    return state == "Z"  # exited; only its parent, now init, has yet to reap it


def wait_until_gone(pid: int) -> None:
    deadline = time.monotonic() + 10
    while not gone(pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert gone(pid)


@pytest.fixture
def pool() -> Iterator[Pool]:
    p = Pool(deadline_s=2.0)  # the 8 MiB case needs about 1 s of a loaded CPU
    yield p
    p.close()
    assert workers(os.getpid()) == []


def test_same_output_as_in_process(pool: Pool) -> None:
    assert pool.render(None, HI) == CHATML_HI
    assert pool.render(QWEN25, TOOL_CHAT, tools=TOOLS) == template.render(QWEN25, TOOL_CHAT, tools=TOOLS)
    assert pool.render(STRFTIME, []) == template.render(STRFTIME, [])
    thinking = "{{ enable_thinking }} {{ think }} {{ bos_token }}{{ eos_token }}"
    assert pool.render(thinking, [], think="high", bos_token="<s>", eos_token="</s>") == "True high <s></s>"
    odd = "\ud800é\x00"  # a lone surrogate and a NUL, as JSON requests may carry
    assert pool.render("{{ messages[0].content }}", [{"role": "user", "content": odd}]) == odd
    with pytest.raises(TemplateRenderError, match="^nope$"):
        pool.render("{{ raise_exception('nope') }}", [])
    with pytest.raises(TemplateRenderError, match="invalid chat template"):
        pool.render("{% if %}", [])


def test_round_trip_is_cheap(pool: Pool) -> None:
    pool.render(None, HI)
    started = time.perf_counter()
    for _ in range(200):
        pool.render(None, HI)
    assert (time.perf_counter() - started) / 200 < 0.005


@pytest.mark.parametrize(("evil", "cause"), [
    *HOSTILE,
    (NESTED.replace("{}", ""), "took longer than 2 s"),  # no output, no allocation: only time stops it
    ("{% for i in range(100000) %}{% for j in range(100000) %}{{ j }}{% endfor %}{% endfor %}",
     "output is larger than 8 MiB"),  # or, on a starved CPU, the deadline first (below)
])
def test_hostile_template_fails_and_the_pool_goes_on(pool: Pool, evil: str, cause: str) -> None:
    pool.render(None, HI)
    started = time.monotonic()
    pattern = re.escape(cause)
    if "8 MiB" in cause:
        pattern += "|took longer than 2 s"
    with pytest.raises(TemplateRenderError, match=pattern):
        pool.render(evil, HI)
    assert time.monotonic() - started < 5
    assert pool.render(None, HI) == CHATML_HI


def test_memory_limit() -> None:
    pool = Pool(deadline_s=30)
    try:
        pid = (pool.render(None, HI), pool.pids())[1]
        with pytest.raises(TemplateRenderError, match=r"needs more than \d+ MiB of memory"):
            pool.render(MEMORY_BOMB, HI)
        assert pool.render(None, HI) == CHATML_HI
        assert pool.pids() == pid  # the worker survived its MemoryError
    finally:
        pool.close()


def test_stuck_worker_is_killed_and_replaced(pool: Pool) -> None:
    pool.render(None, HI)
    [stuck] = pool.pids()
    os.kill(stuck, signal.SIGSTOP)
    with pytest.raises(TemplateRenderError, match="took longer than 2 s"):
        pool.render(None, HI)
    assert gone(stuck)
    assert pool.render(None, HI) == CHATML_HI
    assert stuck not in pool.pids()


def test_dead_idle_worker_is_replaced(pool: Pool) -> None:
    pool.render(None, HI)
    [dead] = pool.pids()
    os.kill(dead, signal.SIGKILL)
    wait_until_gone(dead)
    assert pool.render(None, HI) == CHATML_HI
    assert dead not in pool.pids()


def test_concurrent_renders_beside_a_hostile_one(pool: Pool) -> None:
    errors: list[str] = []
    results: list[str] = []

    def hostile() -> None:
        try:
            pool.render(NESTED.replace("{}", ""), HI)
        except TemplateRenderError as exc:
            errors.append(str(exc))

    def normal(n: int) -> None:
        for i in range(20):
            results.append(pool.render(f"{{{{ {n} }}}}-{i}", []))

    threads = [threading.Thread(target=normal, args=(n,)) for n in range(6)]
    threads.insert(0, threading.Thread(target=hostile))
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == ["chat template took longer than 2 s"]
    assert sorted(results) == sorted(f"{n}-{i}" for n in range(6) for i in range(20))
    assert len(pool.pids()) <= 2


def test_close_stops_workers_and_pool_restarts(pool: Pool) -> None:
    outcome: list[str] = []

    def busy() -> None:
        try:
            pool.render(NESTED.replace("{}", ""), HI)
        except TemplateRenderError as exc:
            outcome.append(str(exc))

    thread = threading.Thread(target=busy)
    thread.start()
    while not pool.pids():
        time.sleep(0.01)
    pool.render(None, HI)  # on the second worker: the first is busy
    pids = workers(os.getpid())
    assert len(pids) == 2
    pool.close()
    assert all(gone(p) for p in pids)
    thread.join()
    assert outcome == ["chat template renderer stopped while rendering"]
    assert workers(os.getpid()) == []
    assert pool.render(None, HI) == CHATML_HI


def test_module_render_and_close() -> None:
    assert sandbox.render(None, HI) == CHATML_HI
    assert len(workers(os.getpid())) == 1
    sandbox.close()
    assert workers(os.getpid()) == []


@pytest.mark.parametrize("how", ["exit", "kill"])
def test_workers_never_outlive_the_parent(how: str) -> None:
    code = ("import sys, time; from roost.chat import sandbox; sandbox.render(None, []);"
            "print('ready', flush=True); sys.stdin.readline()")
    parent = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert parent.stdout is not None and parent.stdin is not None
    assert parent.stdout.readline() == b"ready\n"
    [worker] = workers(parent.pid)
    if how == "kill":
        parent.kill()
    else:
        parent.stdin.close()
    parent.wait()
    wait_until_gone(worker)
