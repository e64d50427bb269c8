"""Helpers for the tests of a server under signals and rude clients: what its runners are
doing (read from /proc, so nothing in the product reports on itself), a store shared by hard
links so each server gets its own ROOST_HOME without copying half a gigabyte, and a client
that sends a request and hangs up.
"""

from __future__ import annotations

import array
import contextlib
import ctypes
import fcntl
import json
import os
import platform
import shutil
import socket
import termios
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from tests.conftest import MODEL, Server, own_pulled_server

RUNNER_MODULE = b"roost.scheduler.runner_main"
# CPython's select.select() is glibc's select(), which is the pselect6 system call.
PSELECT6 = {"x86_64": "270", "aarch64": "72"}[platform.machine()]
SYS_PIDFD_GETFD = 438  # the same number on every architecture


def runner_pids(home: Path) -> list[int]:
    """The runner processes alive for the store under `home` (by their --model path)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            argv = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
            state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z" and RUNNER_MODULE in argv and any(str(home).encode() in a for a in argv):
            found.append(int(entry))
    return found


def runner_idle(pid: int) -> bool:
    """True while the runner waits for messages with nothing to decode.

    runner_main's loop polls its socket without waiting (timeout 0) between decode steps
    while any sequence is active or queued, and blocks with no timeout only when none is: a
    main thread blocked in pselect6 with a NULL timeout is a runner that holds no sequence.
    (A non-blocking poll never shows as blocked. A request still being prepared on another
    thread has no sequence yet: see wait_decoding.)
    """
    fields = Path(f"/proc/{pid}/syscall").read_text().split()
    # pselect6(nfds, readfds, writefds, exceptfds, timeout, sigmask)
    return len(fields) > 5 and fields[0] == PSELECT6 and int(fields[5], 16) == 0


@contextlib.contextmanager
def runner_inbox(pid: int) -> Iterator[Callable[[], int]]:
    """A function that says how many bytes the server has sent the runner that it has not
    read yet: a cancel waiting there has left the server, whatever the runner is busy with.

    The runner's end of its socket (`--fd N`) is duplicated into this process (pidfd_getfd,
    Linux 5.6+) and asked FIONREAD; nothing is read from it. The duplicate is closed on exit,
    so that the server still sees the socket close when the runner dies.
    """
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    target = int(argv[argv.index(b"--fd") + 1])
    pidfd = os.pidfd_open(pid)
    try:
        dup = ctypes.CDLL(None, use_errno=True).syscall(SYS_PIDFD_GETFD, pidfd, target, 0)
    finally:
        os.close(pidfd)
    if dup < 0:
        raise OSError(ctypes.get_errno(), "pidfd_getfd on the runner's socket")

    def unread() -> int:
        count = array.array("i", [0])
        fcntl.ioctl(dup, termios.FIONREAD, count)
        return count[0]

    try:
        yield unread
    finally:
        os.close(dup)


def wait_decoding(pid: int, timeout: float, steady: float = 0.3) -> float:
    """Wait until the runner has been decoding for `steady` seconds on end; the time then.

    A request's first moments on the runner do not count: its message is read on the loop,
    then the request is prepared on another thread while the loop waits idle. Once it is
    decoding, the loop does not wait for messages until no sequence is left.
    """
    since: float | None = None

    def steadily_busy() -> bool:
        nonlocal since
        now = time.monotonic()
        since = None if runner_idle(pid) else (since or now)
        return since is not None and now - since >= steady

    return wait_for(steadily_busy, timeout)


def wait_for(check: Callable[[], bool], timeout: float, every: float = 0.005) -> float:
    """Poll until `check()`; the monotonic time it first held. AssertionError on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        now = time.monotonic()
        if check():
            return now
        if now > deadline:
            raise AssertionError(f"not within {timeout} s: {check}")
        time.sleep(every)


def pulled_template(home: Path) -> Path:
    """A ROOST_HOME with the model pulled by a real server (which is then stopped)."""
    with own_pulled_server(home):
        return home


def link_store(template: Path, home: Path) -> Path:
    """`home` with the template's manifests copied and its blobs hard-linked (real files)."""
    home.mkdir(parents=True, exist_ok=True)
    shutil.copytree(template / "manifests", home / "manifests")
    (home / "blobs").mkdir()
    for blob in (template / "blobs").iterdir():
        if blob.name.startswith("sha256-"):
            os.link(blob, home / "blobs" / blob.name)
    return home


def load_model(srv: Server) -> int:
    """Load the model for good; the pid of its runner."""
    with srv.client() as c:
        r = c.post("/api/generate", json={"model": MODEL, "keep_alive": -1})
        assert r.status_code == 200, r.text
    (pid,) = runner_pids(srv.home)
    return pid


def send_raw(server: Server, path: str, body: dict[str, object]) -> socket.socket:
    """A POST written on a bare socket, so the test decides when the client goes away."""
    host, port = server.host.rsplit(":", 1)
    data = json.dumps(body).encode()
    sock = socket.create_connection((host, int(port)))
    sock.sendall(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                 f"Content-Length: {len(data)}\r\n\r\n".encode() + data)
    return sock


def received(sock: socket.socket) -> bytes:
    """What the server has sent so far, without waiting."""
    sock.setblocking(False)
    try:
        return sock.recv(1 << 20)
    except BlockingIOError:
        return b""
    finally:
        sock.setblocking(True)


def read_response(sock: socket.socket, timeout: float = 60) -> tuple[int, bytes]:
    """The status and body of a response with a Content-Length, read from a `send_raw` socket."""
    sock.settimeout(timeout)
    data = b""
    with sock:
        while b"\r\n\r\n" not in data and (chunk := sock.recv(1 << 16)):
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        length = next(int(v) for k, _, v in (h.partition(":") for h in lines[1:])
                      if k.lower() == "content-length")
        while len(body) < length and (chunk := sock.recv(1 << 16)):
            body += chunk
    return int(lines[0].split()[1]), body
