"""The runner survives CPU kernels that fault: it warms up before ready, and the server falls back.

No machine here has the AMX fault (a VM that advertises AMX without granting it), so the
runner is made to die by a real SIGSEGV at the moment the AMX kernel would: in its warm-up
decode, before it says ready (ROOST_TEST_FAULT_WARMUP names the modes in which it faults).
Everything else is real: the server, the runner process, llama.cpp and the model.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.conftest import MODEL, Server, greedy, start_server, stop_server


def _pull(server: Server) -> None:
    with server.client() as c:
        r = c.post("/api/pull", json={"model": MODEL, "stream": False})
        assert r.status_code == 200, r.text


def _ask(server: Server, prompt: str = "Name three colours.") -> dict:
    with server.client() as c:
        r = c.post("/api/generate", json={"model": MODEL, "prompt": prompt, "stream": False,
                                          "options": greedy(12)})
        assert r.status_code == 200, r.text
        return r.json()


def _runner_modes(server: Server) -> list[str]:
    out = subprocess.run(["pgrep", "-a", "-P", str(server.proc.pid), "-f", "runner_main"],
                         capture_output=True, text=True).stdout
    return [line.split("--cpu-kernels ")[1].split()[0]
            for line in out.splitlines() if "--cpu-kernels" in line]


def _warnings(server: Server) -> list[str]:
    return [ln for ln in server.log.read_text().splitlines() if "died by SIGSEGV while loading" in ln]


def test_a_runner_that_faults_while_loading_is_reloaded_without_extra_buffers(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = {"ROOST_TEST_FAULT_WARMUP": "all"}
    srv = start_server(home, env)
    try:
        _pull(srv)
        answer = _ask(srv)
        assert answer["response"].strip() and answer["done_reason"] in ("stop", "length")
        assert _runner_modes(srv) == ["none"]  # no AMX in this build: straight to no extra buffers
        assert len(_warnings(srv)) == 1, srv.log.read_text()
        remembered = json.loads((home / "cpu-kernels.json").read_text())
        (entry,) = remembered.values()
        assert entry["mode"] == "none" and "SIGSEGV" in entry["reason"]
    finally:
        stop_server(srv)
    # A later server on this machine starts with the kernels that worked: no crash, no warning.
    srv = start_server(home, env)
    try:
        assert _ask(srv)["response"].strip()
        assert _runner_modes(srv) == ["none"]
        assert len(_warnings(srv)) == 1  # the log is shared: the first server's line only
    finally:
        stop_server(srv)


def test_forcing_a_mode_turns_the_fallback_off(tmp_path: Path) -> None:
    srv = start_server(tmp_path / "home", {"ROOST_TEST_FAULT_WARMUP": "all", "ROOST_CPU_KERNELS": "all"})
    try:
        _pull(srv)
        with srv.client() as c:
            r = c.post("/api/generate", json={"model": MODEL, "prompt": "hi", "stream": False})
        assert r.status_code == 500 and "SIGSEGV" in r.json()["error"]
        assert not (srv.home / "cpu-kernels.json").exists()
    finally:
        stop_server(srv)


def test_every_mode_gives_the_same_greedy_answer(tmp_path: Path) -> None:
    """`no-amx` places the repackable weights in CPU_REPACK by hand: same kernels, same tokens."""
    answers = {}
    home = tmp_path / "home"
    for mode in ("all", "no-amx", "none"):
        srv = start_server(home, {"ROOST_CPU_KERNELS": mode})
        try:
            _pull(srv)
            answers[mode] = _ask(srv, "Write a Python function that adds two numbers.")["response"]
            assert _runner_modes(srv) == [mode]
        finally:
            stop_server(srv)
    assert answers["all"] == answers["no-amx"]
    assert answers["none"].strip()


def test_a_load_that_hangs_is_stopped_at_the_timeout(tmp_path: Path) -> None:
    import time

    srv = start_server(tmp_path / "home", {"ROOST_TEST_FAULT_WARMUP": "hang", "ROOST_LOAD_TIMEOUT": "3s"})
    try:
        _pull(srv)
        started = time.monotonic()
        with srv.client() as c:
            r = c.post("/api/generate", json={"model": MODEL, "prompt": "hi", "stream": False})
        assert r.status_code == 504 and "did not load within 3 s" in r.json()["error"]
        assert 2.5 < time.monotonic() - started < 20
        assert _runner_modes(srv) == []  # killed and reaped: nothing left behind
    finally:
        stop_server(srv)
