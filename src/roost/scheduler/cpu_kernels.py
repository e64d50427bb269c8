"""Start a runner with CPU kernels this machine can run, and remember which ones those are.

A llama.cpp build compiled with `-march=native` on a CPU that advertises AMX faults (SIGSEGV)
on the first decode inside a VM that does not grant AMX. The runner decodes once before it
says ready, so such a fault happens while loading. In `auto` mode a runner that dies by a
signal while loading is started again without the AMX buffer type (keeping the repacked
kernels), and if that dies too, with llama.cpp's extra buffer types off. The mode that worked
is kept in `ROOST_HOME/cpu-kernels.json`, keyed by this machine's CPU and llama.cpp build, so
later loads skip the crash. `ROOST_CPU_KERNELS` forces a mode (no fallback).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

from roost import config
from roost.scheduler.runner import Runner, RunnerCrashed, RunnerSpec

log = logging.getLogger("roost.scheduler")

MODES = ("all", "no-amx", "none")  # as the runner's --cpu-kernels (engines.llamacpp.cpu_buffers)
FILE = "cpu-kernels.json"

Spawn = Callable[[RunnerSpec], Awaitable[Runner]]


def fingerprint() -> str:
    """This CPU (model and flags) and this llama.cpp build: what decides which kernels fault."""
    cpu = ""
    try:
        with open("/proc/cpuinfo") as f:
            lines = [ln for ln in f if ln.startswith(("model name", "flags", "Features"))]
        cpu = "".join(sorted(set(lines)))
    except OSError:
        cpu = platform.processor()
    try:
        build = metadata.version("llama-cpp-python")
    except metadata.PackageNotFoundError:
        build = "unknown"
    return hashlib.sha256(f"{platform.machine()}\n{cpu}\n{build}".encode()).hexdigest()[:16]


def remembered(home: Path) -> str | None:
    try:
        entry = json.loads((home / FILE).read_text()).get(fingerprint()) or {}
    except (OSError, ValueError, AttributeError):
        return None
    mode = entry.get("mode") if isinstance(entry, dict) else None
    return mode if mode in MODES else None


def remember(home: Path, mode: str, reason: str) -> None:
    path = home / FILE
    try:
        data = json.loads(path.read_text())
        data = data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        data = {}
    data[fingerprint()] = {"mode": mode, "reason": reason,
                           "at": datetime.now(UTC).isoformat(timespec="seconds")}
    home.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)


def setting() -> str:
    value = config.CPU_KERNELS.get().lower()
    return value if value in ("auto", *MODES) else "auto"


async def spawn(spec: RunnerSpec, home: Path, start: Spawn) -> Runner:
    """Start a runner for `spec`, falling back to safer kernels if it dies by a signal."""
    chosen = setting()
    if chosen != "auto":
        return await start(_with(spec, chosen))
    first = mode = remembered(home) or "all"
    reason = ""
    while True:
        try:
            runner = await start(_with(spec, mode))
        except RunnerCrashed as exc:
            fallback = _next(mode, exc.extra_buffer_types)
            if fallback is None:
                raise
            reason = f"the model runner died by {exc.signal_name} while loading with CPU kernels '{mode}'"
            log.warning("%s; loading again with '%s' (kept in %s; ROOST_CPU_KERNELS=all|no-amx|none "
                        "forces a choice)", reason, fallback, home / FILE)
            mode = fallback
            continue
        if mode != first:
            try:
                remember(home, mode, reason)
            except OSError as exc:  # a full or read-only home: the runner still serves
                log.warning("could not keep the CPU kernel choice in %s: %s", home / FILE, exc)
        return runner


def _next(mode: str, extra_buffer_types: list[str]) -> str | None:
    if mode == "all" and "AMX" in extra_buffer_types:
        return "no-amx"
    if mode in ("all", "no-amx"):
        return "none"
    return None


def _with(spec: RunnerSpec, mode: str) -> RunnerSpec:
    from dataclasses import replace

    return replace(spec, cpu_kernels=mode)
