"""`roost chat`, `roost run -t` and `roost threads`: conversations kept as threads on the server."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pexpect
import pytest

from tests.conftest import MODEL, Server
from tests.conftest import roost_cli as roost

GREEDY = "chat-greedy:1"


@pytest.fixture(scope="module")
def greedy_model(pulled: Server) -> str:
    """The bundled model with greedy sampling, so that a recall test is not left to chance."""
    with pulled.client() as c:
        r = c.post("/api/create", json={"model": GREEDY, "from": MODEL, "stream": False,
                                        "parameters": {"temperature": 0, "num_predict": 24}})
        assert r.status_code == 200, r.text
    return GREEDY


def test_a_thread_continued_across_invocations_remembers(pulled: Server, greedy_model: str) -> None:
    r = roost(pulled, "chat", greedy_model, "-m",
              "Remember this code word: ZEBRA-42. Reply only with: Noted, ZEBRA-42.")
    assert r.returncode == 0, r.stderr
    match = re.search(r"thread: (thread_\w+)", r.stderr)
    assert match, r.stderr
    thread = match.group(1)
    r = roost(pulled, "chat", "-t", thread, "-m", "What was the code word? Answer with it only.")
    assert r.returncode == 0, r.stderr
    assert "thread:" not in r.stderr  # an existing thread is not announced again
    again = roost(pulled, "run", "-t", thread, "Tell me the code word again. Answer with it only.")
    assert again.returncode == 0, again.stderr
    # Greedy, but batching on a busy server can shift a 0.5B model's wording: one recall is
    # enough to show the thread was the context (the stored turns are checked exactly below).
    assert "ZEBRA" in (r.stdout + again.stdout).upper(), (r.stdout, again.stdout)
    listed = roost(pulled, "threads", "list")
    row = next(line for line in listed.stdout.splitlines() if line.startswith(thread))
    assert greedy_model in row and " 6 " in f" {row} "  # three turns of two messages
    shown = roost(pulled, "threads", "show", thread).stdout
    assert ">>> Remember this code word" in shown and "ZEBRA" in shown
    assert roost(pulled, "threads", "rename", thread, "Code words").returncode == 0
    assert "Code words" in roost(pulled, "threads", "list").stdout
    assert roost(pulled, "threads", "rm", thread).stdout.strip() == f"deleted '{thread}'"
    assert thread not in roost(pulled, "threads", "list").stdout


@pytest.mark.parametrize("args", [["chat", "-t", "thread_nope", "-m", "hi"],
                                  ["run", "-t", "thread_nope", MODEL, "hi"],
                                  ["threads", "show", "thread_nope"], ["threads", "rm", "thread_nope"]])
def test_unknown_thread_is_one_line_and_exit_1(pulled: Server, args: list[str]) -> None:
    r = roost(pulled, *args)
    assert r.returncode == 1 and r.stderr.startswith("Error: ") and r.stderr.count("\n") == 1, r.stderr
    assert "not found" in r.stderr


def _leave_and_read_thread(server: Server, shell: Any, keys: str) -> tuple[str, list[dict[str, Any]]]:
    """Leave the shell with `keys`; the thread id it printed, and that thread's messages."""
    shell.child.send(keys)
    shell.child.expect(r"thread: (thread_\w+)")
    thread = shell.child.match.group(1)
    shell.child.expect(pexpect.EOF)
    shell.child.close()
    assert shell.child.exitstatus == 0
    with server.client() as c:
        data = c.get(f"/v1/threads/{thread}/messages", params={"order": "asc"}).json()["data"]
    return thread, data


def test_the_shell_saves_its_chat_as_a_thread(pulled: Server, greedy_model: str) -> None:
    from tests.cli.test_shell import Shell

    shell = Shell(pulled, greedy_model, ROOST_NOHISTORY="1")
    shell.line("Say hello.")
    _, data = _leave_and_read_thread(pulled, shell, "\x04")
    assert [m["role"] for m in data] == ["user", "assistant"]
    assert data[0]["content"][0]["text"]["value"] == "Say hello."


def test_an_interrupted_turn_is_left_out_when_the_thread_resumes(pulled: Server, greedy_model: str) -> None:
    """Ctrl+C (a partial answer) and a failed turn (none at all) stay in the thread, marked
    incomplete, but a resumed session does not give them to the model again."""
    from tests.cli.test_shell import PASTE_OFF, Shell

    shell = Shell(pulled, greedy_model, ROOST_NOHISTORY="1")
    shell.line("Say hello.")
    shell.line("/set parameter num_predict 400")
    shell.child.send("Write a very long story about a dragon.\r")
    shell.child.expect_exact(PASTE_OFF)
    shell.child.expect(r"\w+\W+\w+\W+\w+")  # the answer is streaming
    shell.child.send("\x03")
    shell.prompt(timeout=20)
    shell.line("/set think")  # this model cannot think: the next turn fails before any answer
    assert "Error:" in shell.line("Tell me a secret.")
    thread, data = _leave_and_read_thread(pulled, shell, "/bye\r")
    assert [(m["role"], m["status"]) for m in data] == [
        ("user", "completed"), ("assistant", "completed"), ("user", "completed"),
        ("assistant", "incomplete"), ("user", "completed"), ("assistant", "incomplete")]
    assert data[3]["content"][0]["text"]["value"]  # the partial answer is on record

    resumed = Shell(pulled, args=("-t", thread), ROOST_NOHISTORY="1")
    assert ">>> Say hello." in resumed.opening  # the conversation the model is given
    assert "dragon" not in resumed.opening and "secret" not in resumed.opening
    assert data[3]["content"][0]["text"]["value"][:20] not in resumed.opening
    assert resumed.exit() == 0


def test_killing_the_server_mid_answer_leaves_the_thread_intact(tmp_path: Path) -> None:
    import os
    import signal
    import sqlite3
    import time

    from tests.conftest import start_server, stop_server

    home = tmp_path / "home"
    srv = start_server(home)
    try:
        with srv.client() as c:
            assert c.post("/api/pull", json={"model": MODEL, "stream": False}).status_code == 200
        r = roost(srv, "chat", MODEL, "-m", "Say one word.")
        thread = r.stderr.split("thread: ")[1].split()[0]
        proc = subprocess.Popen([sys.executable, "-m", "roost", "chat", "-t", thread, "-m",
                                 "Write a very long story about the sea."], env=srv.env(),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert proc.stdout is not None
        proc.stdout.read(20)  # the answer is streaming
        os.kill(srv.proc.pid, signal.SIGKILL)
        srv.proc.wait()
        assert proc.wait(timeout=60) == 1
        time.sleep(0.5)
    finally:
        stop_server(srv)
    with sqlite3.connect(home / "roost.db") as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    srv = start_server(home)
    try:
        with srv.client() as c:
            data = c.get(f"/v1/threads/{thread}/messages", params={"order": "asc"}).json()["data"]
        assert [m["content"][0]["text"]["value"] for m in data][:1] == ["Say one word."]
        assert [m["role"] for m in data][:2] == ["user", "assistant"]
    finally:
        stop_server(srv)
