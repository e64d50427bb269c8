"""The CLI as a user runs it: a real `roost` process against a real server."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import MODEL, Server, free_port

ROOST = [sys.executable, "-m", "roost"]


def roost(server: Server, *args: str, stdin: str | None = None,
          timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*ROOST, *args], env=server.env(), input=stdin, text=True,
                          capture_output=True, timeout=timeout)


def test_run_single_shot_prints_answer(pulled: Server) -> None:
    r = roost(pulled, "run", MODEL, "Write a haiku about rivers")
    assert r.returncode == 0, r.stderr
    assert len(r.stdout.split()) >= 3 and r.stderr == ""


def test_run_reads_piped_stdin_before_the_argument(pulled: Server) -> None:
    r = roost(pulled, "run", MODEL, "Repeat the word above, exactly, and nothing else.",
              stdin="pineapple\n")
    assert r.returncode == 0, r.stderr
    assert "pineapple" in r.stdout.lower()


def test_verbose_stats_go_to_stderr(pulled: Server) -> None:
    r = roost(pulled, "run", "--verbose", MODEL, "Say hi.")
    assert r.returncode == 0
    assert "eval rate:" in r.stderr and "eval rate" not in r.stdout


def test_unknown_model_exits_1_with_one_line(pulled: Server) -> None:
    r = roost(pulled, "run", "no-such-model:1b", "hi")
    assert r.returncode == 1
    assert r.stderr.startswith("Error: ") and r.stderr.count("\n") == 1
    assert "Traceback" not in r.stderr


def test_bad_format_exits_1(pulled: Server) -> None:
    r = roost(pulled, "run", "--format", "{not json", MODEL, "hi")
    assert r.returncode == 1 and "Error:" in r.stderr and "Traceback" not in r.stderr


def test_list_show_ps_stop(pulled: Server) -> None:
    r = roost(pulled, "list")
    assert r.returncode == 0 and r.stdout.split()[:4] == ["NAME", "ID", "SIZE", "MODIFIED"]
    assert MODEL in r.stdout
    r = roost(pulled, "show", MODEL)
    assert r.returncode == 0 and "qwen2" in r.stdout and "Q4_K_M" in r.stdout
    assert roost(pulled, "show", "--template", MODEL).stdout.startswith("{%")
    roost(pulled, "run", MODEL, "Hi", "--keepalive", "5m")
    r = roost(pulled, "ps")
    assert r.returncode == 0 and "100% CPU" in r.stdout and MODEL in r.stdout
    assert roost(pulled, "stop", MODEL).returncode == 0
    assert MODEL not in roost(pulled, "ps").stdout


def test_ctrl_c_exits_130(pulled: Server) -> None:
    proc = subprocess.Popen([*ROOST, "run", MODEL, "Write a very long essay about the sea."],
                            env=pulled.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, text=True)
    assert proc.stdout is not None
    proc.stdout.read(1)  # the answer has started streaming
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=30) == 130
    assert "Traceback" not in (proc.stderr.read() if proc.stderr else "")


def _pids_with_home(home: Path) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"ROOST_HOME={home}".encode() in environ:
            pids.append(int(entry.name))
    return pids


def test_cli_starts_a_server_when_none_answers(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = {**os.environ, "ROOST_HOME": str(home), "ROOST_HOST": f"127.0.0.1:{free_port()}"}
    try:
        r = subprocess.run([*ROOST, "list"], env=env, capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        assert r.stdout.split() == ["NAME", "ID", "SIZE", "MODIFIED"]
        assert (home / "logs" / "server.log").read_text()
    finally:
        for pid in _pids_with_home(home):
            os.kill(pid, signal.SIGTERM)
        time.sleep(0.5)


def test_cli_refuses_a_server_that_is_not_roost(tmp_path: Path) -> None:
    import http.server
    import threading

    class Ollamaish(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            body = b'{"version":"0.12.0"}'
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    srv = http.server.HTTPServer(("127.0.0.1", 0), Ollamaish)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        env = {**os.environ, "ROOST_HOME": str(tmp_path), "ROOST_HOST": f"127.0.0.1:{srv.server_port}"}
        r = subprocess.run([*ROOST, "list"], env=env, capture_output=True, text=True, timeout=30)
        assert r.returncode == 1 and "ROOST_HOST" in r.stderr and "not Roost" in r.stderr
    finally:
        srv.shutdown()


def test_run_pulls_a_missing_model_first(tmp_path: Path) -> None:
    from tests.conftest import start_server, stop_server

    srv = start_server(tmp_path / "home")
    try:
        r = roost(srv, "run", MODEL, "Say hi.")
        assert r.returncode == 0, r.stderr
        assert "pulling manifest" in r.stderr and "success" in r.stderr  # progress on stderr
        assert r.stdout.strip()
        assert MODEL in roost(srv, "list").stdout
    finally:
        stop_server(srv)


def test_cp_and_rm(pulled: Server) -> None:
    r = roost(pulled, "cp", MODEL, "mine:copy")
    assert r.returncode == 0 and "copied" in r.stdout
    assert "mine:copy" in roost(pulled, "list").stdout
    r = roost(pulled, "rm", "mine:copy")
    assert r.returncode == 0 and r.stdout.strip() == "deleted 'mine:copy'"
    assert "mine:copy" not in roost(pulled, "list").stdout
    assert MODEL in roost(pulled, "list").stdout
    r = roost(pulled, "cp", "missing:1", "x:1")
    assert r.returncode == 1 and r.stderr.startswith("Error:")
