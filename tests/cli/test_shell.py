"""The `roost run` shell as a user drives it: a real pseudo-terminal, server and model.

Each exchange is read between the terminal modes prompt_toolkit switches: it turns bracketed
paste off (`ESC[?2004l`) when a line is accepted and on (`ESC[?2004h`) when the next prompt
opens, so what lies between is exactly the output of that line.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pexpect
import pytest

from tests.conftest import MODEL, Server

SAVED = ("shell-multiline", "shell-zorblax", "shell-cleared", "shell-gemma", "shell-interrupted")
PASTE_OFF, PASTE_ON = "\x1b[?2004l", "\x1b[?2004h"
_ESCAPES = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][0-9A-Za-z]|\r")


def plain(text: str) -> str:
    return _ESCAPES.sub("", text)


class Shell:
    def __init__(self, server: Server, model: str = MODEL, dimensions: tuple[int, int] = (24, 100),
                 args: tuple[str, ...] = (), **env: str) -> None:
        """`roost run MODEL`, or `roost run ARGS...` when args are given."""
        self.child = pexpect.spawn(sys.executable, ["-m", "roost", "run", *(args or (model,))],
                                   env=server.env(PROMPT_TOOLKIT_NO_CPR="1", **env),
                                   dimensions=dimensions, encoding="utf-8", timeout=60)
        self.opening = self.prompt()

    def prompt(self, timeout: float = 60) -> str:
        """Wait for the next prompt; the output before it, without escape codes."""
        self.child.expect_exact(PASTE_ON, timeout=timeout)
        out = self.child.before
        self.child.expect(r">>> |\.\.\. ")
        self.last_prompt = self.child.after
        return plain(out)

    def line(self, text: str, timeout: float = 60) -> str:
        self.child.send(text + "\r")
        return self.output(timeout)

    def output(self, timeout: float = 60) -> str:
        self.child.expect_exact(PASTE_OFF)
        return self.prompt(timeout)

    def short_answers(self, num_predict: int = 40) -> None:
        assert "Set parameter 'temperature' to '0'" in self.line("/set parameter temperature 0")
        self.line(f"/set parameter num_predict {num_predict}")

    def exit(self) -> int:
        self.child.send("\x04")
        self.child.expect(pexpect.EOF)
        self.child.close()
        return int(self.child.exitstatus)


def show(server: Server, model: str) -> dict[str, Any]:
    with server.client() as c:
        r = c.post("/api/show", json={"model": model})
        assert r.status_code == 200, r.text
        return dict(r.json())


def saved_messages(server: Server, model: str) -> list[tuple[str, str]]:
    return [(m["role"], m["content"]) for m in show(server, model).get("messages") or []]


def pull_requests(server: Server) -> float:
    """How many /api/pull requests the server has answered, whatever their status."""
    from tests.support.metrics import scrape

    with server.client() as c:
        return sum(v for (name, labels), v in scrape(c).items()
                   if name == "roost_http_requests_total" and ("route", "/api/pull") in labels)


@pytest.fixture(scope="module", autouse=True)
def _leave_the_server_as_found(pulled: Server) -> Iterator[None]:
    """The shared server gets back its runners and store: saved models deleted, gemma unloaded."""
    yield
    with pulled.client() as c:
        for name in SAVED:
            c.request("DELETE", "/api/delete", json={"model": name})
        c.post("/api/generate", json={"model": "gemma3:270m", "keep_alive": 0})


def test_two_turns_help_show_and_keys(pulled: Server, tmp_path: Path) -> None:
    sh = Shell(pulled, ROOST_HOME=str(tmp_path))
    sh.short_answers()
    help_text = sh.line("/?")
    for command in ("/set", "/show", "/load", "/save", "/clear", "/list", "/bye", "/exit", "/?",
                    "/help", '"""'):
        assert command in help_text
    assert "/set parameter" in sh.line("/? set") and "/show modelfile" in sh.line("/? show")
    assert "Ctrl + d" in sh.line("/? shortcuts")
    params = sh.line("/show parameters")
    assert "Model defined parameters:" in params and "User defined parameters:" in params
    assert re.search(r"temperature\s+0\n", params) and re.search(r"num_predict\s+40\n", params)
    modelfile = sh.line("/show modelfile")
    assert "FROM " in modelfile and re.search(r"PARAMETER temperature\s+0\n", modelfile)
    assert "qwen2" in sh.line("/show info") and MODEL in sh.line("/list")

    sh.line("My name is Zorblax. Reply OK.")
    assert "Zorblax" in sh.line("What is my name?")

    bad = sh.line("/set parameter temperature hot").strip()
    assert bad.startswith("Couldn't set parameter 'temperature'") and "\n" not in bad
    assert sh.line("/set bogus").strip() == "Unknown command '/set bogus'. Type /? for help"
    assert sh.line("/x").strip() == "Unknown command '/x'. Type /? for help"
    sh.child.send("\x03")  # at an empty prompt
    assert sh.output().strip() == "Use Ctrl + d or /bye to exit."
    sh.child.send("/x")
    sh.child.send("\x03")  # at a typed line: the line goes, the prompt stays
    assert sh.line("/clear").strip() == "Cleared session context"
    assert sh.exit() == 0
    history = (tmp_path / "history").read_text()
    assert "+My name is Zorblax. Reply OK.\n" in history and "+/show modelfile\n" in history

    again = Shell(pulled, ROOST_HOME=str(tmp_path))
    assert again.line("\x1b[A\x1b[A\x1b[B").strip() == "Cleared session context"  # Up, Up, Down
    again.child.send("\x0c")  # Ctrl+L
    again.child.expect_exact("\x1b[2J")
    assert again.exit() == 0


def test_multiline_paste_system_and_history_switch(pulled: Server, tmp_path: Path) -> None:
    sh = Shell(pulled, ROOST_HOME=str(tmp_path))
    sh.short_answers(num_predict=1)
    sh.line('"""')
    assert sh.last_prompt == "... "
    sh.line("Say the word")
    sh.line('apple"""')
    assert sh.last_prompt == ">>> "
    sh.child.send("\x1b[200~line one\nline two\x1b[201~")
    sh.line("")
    sh.line('/set system "Be brief."')
    assert sh.line("/show system").strip() == "Be brief."
    sh.line('/set system """You are terse.')
    assert sh.line('Answer in one word."""').strip() == "Set system message."
    assert sh.line("/show system").strip() == "You are terse.\nAnswer in one word."
    sh.line("/set nohistory")
    sh.line("/show template")
    sh.line("/set history")
    sh.line("/save shell-multiline")
    assert sh.exit() == 0
    assert saved_messages(pulled, "shell-multiline")[0::2] == [
        ("user", "Say the word\napple"), ("user", "line one\nline two")]
    assert show(pulled, "shell-multiline")["system"] == "You are terse.\nAnswer in one word."
    history = (tmp_path / "history").read_text()
    assert "\n+line one\n+line two\n" in history  # one entry
    assert "/show template" not in history and "+/save shell-multiline\n" in history


def test_save_then_list_and_run_the_saved_model(pulled: Server) -> None:
    sh = Shell(pulled)
    sh.short_answers()
    sh.line("My name is Zorblax. Reply OK.")
    assert sh.line("/save shell-zorblax").strip() == "Created new model 'shell-zorblax'"
    assert sh.exit() == 0
    listed = subprocess.run([sys.executable, "-m", "roost", "list"], env=pulled.env(),
                            capture_output=True, text=True, timeout=60)
    assert "shell-zorblax" in listed.stdout
    assert re.search(r"temperature\s+0\n", show(pulled, "shell-zorblax")["parameters"] + "\n")

    again = Shell(pulled, "shell-zorblax")
    assert ">>> My name is Zorblax. Reply OK." in again.opening
    assert "Zorblax" in again.line("What is my name?")  # the saved parameters keep it short
    assert again.exit() == 0


def test_errors_images_and_clear_keep_nothing(pulled: Server, tmp_path: Path) -> None:
    (tmp_path / "home" / "history").mkdir(parents=True)  # a history file that cannot be written
    sh = Shell(pulled, ROOST_HOME=str(tmp_path / "home"))
    out = sh.line("/set parameter temperature 0")
    assert out.startswith("Error: could not write the history file") and "Set parameter" in out
    sh.line("/set parameter num_predict 3")
    assert "does not support thinking" in sh.line("/set think")
    out = sh.line("Hi")
    assert out.strip().startswith("Error:") and "thinking" in out and "Traceback" not in out
    sh.line("/set nothink")
    image = tmp_path / "cat.png"
    image.write_bytes(b"\x89PNG\r\n\x1a\n")
    out = sh.line(f"What is in {image}?").strip()
    assert "cannot see images" in out and "\n" not in out
    pulls = pull_requests(pulled)
    out = sh.line("/load no-such-model:1b")  # not in the store: said, and nothing is pulled
    assert out.strip() == "Loading model 'no-such-model:1b'\nCouldn't find model 'no-such-model:1b'"
    assert pull_requests(pulled) == pulls
    assert "qwen2" in sh.line("/show info")  # still the same model
    sh.line("Reply OK.")
    assert sh.line("/clear").strip() == "Cleared session context"
    sh.line("/save shell-cleared")
    assert sh.exit() == 0
    assert saved_messages(pulled, "shell-cleared") == []


def test_load_keeps_the_conversation(pulled: Server) -> None:
    with pulled.client(timeout=240) as c:  # /load takes a model from the store; it never pulls
        assert c.post("/api/pull", json={"model": "gemma3:270m", "stream": False}).status_code == 200
    sh = Shell(pulled)
    sh.short_answers(num_predict=5)
    sh.line("My name is Zorblax. Reply OK.")
    assert "Loading model 'gemma3:270m'" in sh.line("/load gemma3:270m", timeout=120)
    assert "gemma3" in sh.line("/show info")
    sh.line("What is my name?")
    sh.line("/save shell-gemma")
    assert sh.exit() == 0
    messages = saved_messages(pulled, "shell-gemma")
    assert [role for role, _ in messages] == ["user", "assistant", "user", "assistant"]
    assert messages[0] == ("user", "My name is Zorblax. Reply OK.")
    assert show(pulled, "shell-gemma")["details"]["family"] == "gemma3"


def test_ctrl_c_stops_an_answer_and_keeps_nothing(pulled: Server) -> None:
    sh = Shell(pulled)
    sh.short_answers(num_predict=400)
    sh.child.send("Write a very long story about a dragon.\r")
    sh.child.expect_exact(PASTE_OFF)
    sh.child.expect(r"\w+\W+\w+\W+\w+")  # the answer is streaming
    sh.child.send("\x03")
    sh.prompt(timeout=20)
    sh.line("/set parameter num_predict 5")
    assert sh.line("Reply OK.").strip()
    sh.line("/save shell-interrupted")
    assert sh.exit() == 0
    assert [m[1] for m in saved_messages(pulled, "shell-interrupted")][:1] == ["Reply OK."]
    assert len(saved_messages(pulled, "shell-interrupted")) == 2


def test_word_wrap_never_splits_a_word(pulled: Server) -> None:
    sh = Shell(pulled, dimensions=(40, 40))
    sh.short_answers(num_predict=60)
    out = sh.line("Repeat this sentence exactly: The word supercalifragilisticexpialidocious "
                  "is very long and fun to say.")
    lines = out.strip("\n").split("\n")
    assert len(lines) > 1 and all(len(line) <= 40 for line in lines), lines
    assert any("supercalifragilisticexpialidocious" in line for line in lines)
    assert sh.exit() == 0


def test_ctrl_g_edits_and_nohistory_writes_none(pulled: Server, tmp_path: Path) -> None:
    editor_text = "Edited by the editor"
    editor = tmp_path / "editor.py"
    editor.write_text(f"import sys\nopen(sys.argv[1], 'w').write({editor_text!r} + '\\n')\n")
    sh = Shell(pulled, ROOST_HOME=str(tmp_path / "home"), ROOST_NOHISTORY="1",
               ROOST_EDITOR=f"{sys.executable} {editor}")
    sh.child.send("draft")
    sh.child.send("\x07")
    sh.child.expect_exact(PASTE_OFF)
    sh.prompt()
    sh.child.expect_exact(editor_text)  # back in the prompt, ready to send or change
    sh.child.send("\x03")
    assert sh.line("/set verbose").strip() == "Set 'verbose' mode."
    assert sh.exit() == 0
    assert not (tmp_path / "home" / "history").exists()
