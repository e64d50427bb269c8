"""The process untrusted chat templates render in: ``python -m roost.chat.render_worker``.

The checks in roost.chat.template refuse the common bombs, but a template is a program and may find
another way to ask for gigabytes or loop for hours. Here an address-space limit turns any such
request into a MemoryError and an alarm turns overtime into an answer, so one template costs the
server an error message, never its memory or its event loop; if even that fails, the server kills
this process (roost.chat.sandbox) and starts another.

Protocol: after a ``{"ready": true}`` line, each JSON line read from stdin, the arguments of
template.render plus ``"timeout"`` in seconds, gets one JSON line back, ``{"ok": text}`` or
``{"error": message}``. The process exits when stdin closes, so it never outlives the server.
"""

from __future__ import annotations

import gc
import json
import resource
import signal
import sys
from typing import Any

from roost.chat.template import TemplateRenderError, render

# About 40 times what the worker needs to start (about 25 MB of address space): room for any real
# template and a prompt of MAX_OUTPUT_CHARS many times over, and far below what the machine has.
MEMORY_LIMIT = 1 << 30


class _Overtime(BaseException):
    """A BaseException, so that no `except Exception` in a template's path can swallow it."""


_armed = False


def _on_alarm(signum: int, frame: Any) -> None:
    if _armed:
        raise _Overtime


def _vm_size() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    return 0


def _limit_memory() -> int:
    limit = max(MEMORY_LIMIT, _vm_size() + MEMORY_LIMIT // 2)
    hard = resource.getrlimit(resource.RLIMIT_AS)[1]
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    return limit


def _render(job: dict[str, Any]) -> dict[str, str]:
    global _armed
    timeout = float(job.pop("timeout"))
    _armed = True
    signal.setitimer(signal.ITIMER_REAL, timeout)
    try:
        return {"ok": render(**job)}
    finally:
        _armed = False
        signal.setitimer(signal.ITIMER_REAL, 0)


def _serve(line: bytes, limit: int) -> dict[str, str]:
    global _armed
    try:
        job = json.loads(line)
        timeout = float(job["timeout"])
        return _render(job)
    except _Overtime:
        _armed = False  # the alarm fired inside _render's cleanup: it cannot fire again
        return {"error": f"chat template took longer than {timeout:g} s"}
    except MemoryError:
        return {"error": f"chat template needs more than {limit >> 20} MiB of memory"}
    except TemplateRenderError as exc:
        return {"error": str(exc)}
    except Exception as exc:  # a malformed job or a template failing in an unforeseen way
        return {"error": f"chat template failed: {exc}"}


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the server, which then stops us
    signal.signal(signal.SIGALRM, _on_alarm)
    limit = _limit_memory()
    out = sys.stdout.buffer
    out.write(b'{"ready": true}\n')
    out.flush()
    for line in sys.stdin.buffer:
        answer = _serve(line, limit)
        try:
            data = json.dumps(answer).encode() + b"\n"
        except MemoryError:
            data = b'{"error": "chat template output is too large to return"}\n'
        if "error" in answer:
            # A failed render's traceback holds its frames in reference cycles, and with them
            # whatever the template built: free that now, not at some later collection.
            gc.collect()
        del answer
        out.write(data)
        out.flush()


if __name__ == "__main__":
    main()
