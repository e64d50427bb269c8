"""What the soak watches in the server and its runner: resident memory and open descriptors.

Read straight from /proc (psutil is not a dependency): VmRSS from /proc/PID/status, the fd
count from /proc/PID/fd, and the server's children from /proc/PID/task/*/children. The runner
is told apart from the template render workers (also children) by its command line.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

RUNNER_MODULE = "roost.scheduler.runner_main"


def rss_mb(pid: int) -> float:
    """Resident set size in MB (VmRSS), or -1 when the process is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except (FileNotFoundError, ProcessLookupError):
        pass
    return -1.0


def cpu_s(pid: int) -> float:
    """CPU seconds used so far (user + system), or -1 when the process is gone. On a machine
    shared with other work this says how much of the wall time the process actually ran."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return -1.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def fd_count(pid: int) -> int:
    """Open file descriptors, or -1 when the process is gone."""
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except (FileNotFoundError, ProcessLookupError):
        return -1


def fd_kinds(pid: int) -> dict[str, int]:
    """Open fds by kind (socket, pipe, anon_inode, file), to tell a leaked connection or file
    from the pipes of a template render worker that started meanwhile (the pool grows to 2)."""
    kinds = {"socket": 0, "pipe": 0, "anon_inode": 0, "file": 0}
    try:
        names = os.listdir(f"/proc/{pid}/fd")
    except (FileNotFoundError, ProcessLookupError):
        return kinds
    for name in names:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{name}")
        except OSError:  # closed between the listing and the look
            continue
        kind = target.split(":", 1)[0]
        kinds[kind if kind in kinds else "file"] += 1
    return kinds


def children(pid: int) -> list[int]:
    """Direct children of `pid`, across all its threads (asyncio spawns from any of them)."""
    kids: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            text = Path(f"/proc/{pid}/task/{task}/children").read_text()
            kids.extend(int(p) for p in text.split())
    except (FileNotFoundError, ProcessLookupError):
        pass
    return sorted(set(kids))


def cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except (FileNotFoundError, ProcessLookupError):
        return []


def runner_pid(server_pid: int) -> int | None:
    """The server's model runner (one model is loaded in the soak), or None if none runs."""
    runners = [p for p in children(server_pid) if RUNNER_MODULE in cmdline(p)]
    return runners[0] if len(runners) == 1 else None


@dataclass(frozen=True)
class Sample:
    t: float  # seconds since the soak began
    server_rss_mb: float
    runner_rss_mb: float
    server_fds: int
    runner_fds: int
    server_cpu_s: float
    runner_cpu_s: float
    runner_pid: int
    children: int  # the runner plus any template render workers

    def as_dict(self) -> dict[str, float | int]:
        return {k: round(v, 1) if isinstance(v, float) else v for k, v in asdict(self).items()}


def sample(server_pid: int, t: float) -> Sample:
    runner = runner_pid(server_pid) or -1
    return Sample(t=t, server_rss_mb=rss_mb(server_pid), runner_rss_mb=rss_mb(runner),
                  server_fds=fd_count(server_pid), runner_fds=fd_count(runner),
                  server_cpu_s=cpu_s(server_pid), runner_cpu_s=cpu_s(runner), runner_pid=runner,
                  children=len(children(server_pid)))


class Sampler(threading.Thread):
    """Samples every `every` seconds from `started` until stopped, on the sample grid.

    Ticks are placed on multiples of `every` after `started` (not after the previous sample),
    so the samples at 60 s and 180 s are taken at those moments even on a loaded machine.
    """

    def __init__(self, server_pid: int, started: float, every: float = 5.0) -> None:
        super().__init__(name="soak-sampler", daemon=True)
        self.server_pid, self.started, self.every = server_pid, started, every
        self.samples: list[Sample] = []
        self._stop_event = threading.Event()

    def run(self) -> None:
        tick = 0
        while not self._stop_event.is_set():
            self.samples.append(sample(self.server_pid, time.monotonic() - self.started))
            tick += 1
            wait = self.started + tick * self.every - time.monotonic()
            self._stop_event.wait(max(0.0, wait))

    def stop(self) -> list[Sample]:
        self._stop_event.set()
        self.join(timeout=10)
        return list(self.samples)


def at(samples: list[Sample], t: float) -> Sample:
    """The first sample taken at or after `t` seconds (the last one if none was)."""
    return next((s for s in samples if s.t >= t - 0.5), samples[-1])
