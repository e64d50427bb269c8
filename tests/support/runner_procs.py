"""A real server's runner processes, seen from outside: which ones, which model, reaped or not.

Read from /proc and pgrep, as an operator would, so the tests check what the scheduler did
to real processes rather than what it believes.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from tests.conftest import Server

QWEN_BLOB = "1d9614638d18"  # the start of qwen2.5-coder:0.5b's weights digest
GEMMA_BLOB = "a5fd3b62230a"  # gemma3:270m's


def runner_pids(server: Server) -> list[int]:
    """The server's runner children, whatever model they hold."""
    out = subprocess.run(["pgrep", "-P", str(server.proc.pid), "-f", "runner_main"],
                         capture_output=True, text=True)
    return sorted(int(p) for p in out.stdout.split())


def has_blob_open(pid: int, digest_prefix: str) -> bool:
    try:
        maps = Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return False
    return f"sha256-{digest_prefix}" in maps


def runner_pids_of(server: Server, digest_prefix: str) -> list[int]:
    """The runners that have this weights blob mapped: one model's, whatever else is loaded."""
    return [p for p in runner_pids(server) if has_blob_open(p, digest_prefix)]


def process_state(pid: int) -> str | None:
    """The state letter in /proc/PID/stat (Z: a zombie nobody reaped), None once reaped."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[0]


def wait_reaped(pid: int, within: float) -> float | None:
    """Seconds until the process is gone from /proc (reaped by its parent), None if it is not."""
    started = time.monotonic()
    while time.monotonic() - started < within:
        if process_state(pid) is None:
            return time.monotonic() - started
        time.sleep(0.01)
    return None
