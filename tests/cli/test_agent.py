"""`roost run --experimental`: the agent loop, end to end against a real server.

The bundled 0.5B model calls tools unreliably, so these tests run the server on the scripted
fake runner (tests/support/fake_runner.py): the model's side is fixed text, and everything
else (the chat API with `tools`, the template, the output parser, the CLI's approvals and
tools) is the real code. Approvals are typed into a pseudo-terminal (pexpect). The last test
runs the real model, to see the loop reach an answer when no tool is called.
"""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pexpect

from roost.cli import agent_tools
from roost.cli.agent import DENIED, describe
from tests.conftest import MODEL, Server
from tests.support import (
    THINKING_MODEL,
    TOOLS_MODEL,
    FakeServer,
    search_server,
    tool_call,
    tool_results,
)

ROOST = [sys.executable, "-m", "roost"]


def shell(command: str) -> list[str]:
    return [tool_call("run_shell", command=command)]


def ask(question: str) -> str:
    """The approval prompt for a call, as a pattern."""
    return re.escape(f"Run `{question}`? [y]es / [n]o / [a]lways")


def spawn(fake: FakeServer, cwd: Path, *args: str) -> pexpect.spawn:
    """`roost run --experimental ARGS` in a pseudo-terminal, all its output kept in logfile_read."""
    child = pexpect.spawn(sys.executable, ["-m", "roost", "run", "--experimental", *args], cwd=str(cwd),
                          env=fake.server.env(), encoding="utf-8", timeout=60, dimensions=(24, 200))
    child.logfile_read = io.StringIO()
    return child


def finish(child: pexpect.spawn) -> str:
    """Wait for the exit (status 0); the whole output."""
    child.expect(pexpect.EOF)
    child.close()
    out = child.logfile_read.getvalue()
    assert child.exitstatus == 0, out
    return str(out)


def batch(fake: FakeServer, cwd: Path, *args: str, env: dict[str, str] | None = None,
          ) -> subprocess.CompletedProcess[str]:
    """No terminal at all (a new session, stdin from /dev/null): nobody can be asked."""
    return subprocess.run([*ROOST, "run", *args], cwd=cwd, env={**fake.server.env(), **(env or {})},
                          text=True, capture_output=True, stdin=subprocess.DEVNULL, timeout=60,
                          start_new_session=True)


def test_approved_call_runs_and_its_output_goes_back(fake: FakeServer, tmp_path: Path) -> None:
    log = fake.script(answers=[shell("touch marker && echo ran-7f3a"), ["Done: it ran."]])
    child = spawn(fake, tmp_path, TOOLS_MODEL, "make a marker")
    child.expect(ask("touch marker && echo ran-7f3a"))
    child.sendline("y")
    out = finish(child)
    assert (tmp_path / "marker").exists()
    assert "ran-7f3a" in out and out.rstrip().endswith("Done: it ran.")
    assert tool_results(fake.prompts(log)[-1]) == ["ran-7f3a"]


def test_denied_call_does_not_run(fake: FakeServer, tmp_path: Path) -> None:
    log = fake.script(answers=[shell("touch marker"), ["Fine, I will not."]])
    child = spawn(fake, tmp_path, TOOLS_MODEL, "make a marker")
    child.expect(ask("touch marker"))
    child.sendline("n")
    assert finish(child).rstrip().endswith("Fine, I will not.")
    assert not (tmp_path / "marker").exists()
    assert tool_results(fake.prompts(log)[-1]) == [DENIED]


def test_always_covers_only_the_exact_command_line(fake: FakeServer, tmp_path: Path) -> None:
    tricks = ["echo hi; touch x1", "echo hi && touch x2", 'echo "hi" $(touch x3)', "echo hi ",
              "cat tools/$(touch x4)"]
    log = fake.script(answers=[shell("echo hi"), shell("echo hi"), shell("cat tools/a.txt"),
                               shell("cat tools/a.txt"), *[shell(t) for t in tricks], ["Done."]])
    (tmp_path / "tools").mkdir()
    (tmp_path / "tools" / "a.txt").write_text("file-a\n")
    child = spawn(fake, tmp_path, TOOLS_MODEL, "go")
    child.expect(ask("echo hi"))
    child.sendline("a")
    child.expect(ask("cat tools/a.txt"))
    child.sendline("always")
    for trick in tricks:  # each is asked again, however much it starts like an approved one
        child.expect(ask(trick))
        child.sendline("n")
    out = finish(child)
    assert out.count("Run `echo hi`?") == 1 and out.count("Run `cat tools/a.txt`?") == 1
    assert not list(tmp_path.glob("x*"))
    assert tool_results(fake.prompts(log)[-1]) == ["hi", "hi", "file-a", "file-a", *[DENIED] * 5]


def test_ctrl_c_at_the_question_exits_130_without_running(fake: FakeServer, tmp_path: Path) -> None:
    fake.script(answers=[shell("touch marker"), ["Done."]])
    child = spawn(fake, tmp_path, TOOLS_MODEL, "go")
    child.expect(ask("touch marker"))
    child.sendintr()
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 130 and not (tmp_path / "marker").exists()


def test_the_question_shows_control_characters_escaped() -> None:
    """A command cannot redraw its own question (a carriage return, an escape sequence)."""
    assert describe("run_shell", {"command": "rm -rf ~\r\x1b[2Kecho hi"}) == "rm -rf ~\\r\\x1b[2Kecho hi"
    assert describe("read_file", {"path": "a\nb"}) == 'read_file({"path": "a\\nb"})'


def test_shell_output_is_bounded_and_a_hung_command_is_killed(tmp_path: Path) -> None:
    out = agent_tools.run_shell("head -c 100000 /dev/zero | tr '\\0' x; exit 3")
    assert out == "x" * 16384 + "\n[cut: showing the first 16384 of 100000 bytes]\n[exit code 3]"
    out = agent_tools.run_shell(f"(sleep 3; touch {tmp_path}/late) & echo early", timeout=0.5)
    assert out == "early\n[timed out after 0.5 s; the command was killed]"
    time.sleep(3.5)
    assert not (tmp_path / "late").exists()  # the whole group went, not just the shell


def test_yolo_runs_without_asking_and_warns_once(fake: FakeServer, tmp_path: Path) -> None:
    fake.script(answers=[shell("touch marker"), shell("echo two"), ["Done."]])
    r = batch(fake, tmp_path, "--experimental-yolo", TOOLS_MODEL, "go")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "marker").exists() and "Run `" not in r.stdout + r.stderr
    assert r.stderr.count("Warning") == 1 and r.stderr.startswith("Warning: --experimental-yolo")


def test_without_a_terminal_calls_are_denied(fake: FakeServer, tmp_path: Path) -> None:
    log = fake.script(answers=[shell("touch marker"), ["Done."]])
    r = batch(fake, tmp_path, "--experimental", TOOLS_MODEL, "go")
    assert r.returncode == 0, r.stderr
    assert not (tmp_path / "marker").exists() and "No terminal to ask" in r.stderr
    assert tool_results(fake.prompts(log)[-1]) == [DENIED]


def test_read_file_and_list_dir_are_bounded(fake: FakeServer, tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("secret-words-42\n")
    (tmp_path / "big.txt").write_text("x" * 40960)
    (tmp_path / "sub").mkdir()
    calls = [("read_file", "notes.txt"), ("read_file", "big.txt"), ("list_dir", "."),
             ("read_file", "missing.txt")]
    log = fake.script(answers=[[tool_call(n, path=p)] for n, p in calls] + [["Done."]])
    r = batch(fake, tmp_path, "--experimental-yolo", TOOLS_MODEL, "look around")
    assert r.returncode == 0, r.stderr
    notes, big, listing, missing = tool_results(fake.prompts(log)[-1])
    assert notes == "secret-words-42"
    assert big.endswith("[cut: showing the first 16384 of 40960 bytes]") and len(big) < 16500
    assert listing.splitlines() == ["big.txt", "notes.txt", "sub/"]
    assert missing.startswith("error: cannot read missing.txt")


def test_round_cap_stops_a_model_that_never_answers(fake: FakeServer, tmp_path: Path) -> None:
    fake.script(rules=[("<|im_start|>user", shell("true"))])
    r = batch(fake, tmp_path, "--experimental-yolo", TOOLS_MODEL, "go")
    assert r.returncode == 0, r.stderr
    assert "Stopped: still calling tools after 10 rounds." in r.stderr


def test_web_search_calls_the_configured_endpoint(fake: FakeServer, tmp_path: Path) -> None:
    results = {"results": [{"title": "Roost", "url": "http://example.invalid/roost"}]}
    with search_server(results) as (url, seen):
        log = fake.script(answers=[[tool_call("web_search", query="roost llama")], ["Found it."]])
        env = {"ROOST_WEBSEARCH_URL": url + "/search?q={query}", "NO_PROXY": "127.0.0.1",
               "no_proxy": "127.0.0.1"}
        r = batch(fake, tmp_path, "--experimental-websearch", "--experimental-yolo", TOOLS_MODEL, "search",
                  env=env)
    assert r.returncode == 0, r.stderr
    assert seen == ["/search?q=roost+llama"]
    first, last = fake.prompts(log)
    assert '"web_search"' in first
    assert json.loads(tool_results(last)[0]) == results


def test_web_search_without_an_endpoint_is_one_line_error(fake: FakeServer, tmp_path: Path) -> None:
    r = batch(fake, tmp_path, "--experimental-websearch", TOOLS_MODEL, "search",
              env={"ROOST_WEBSEARCH_URL": ""})
    assert r.returncode == 1 and r.stderr.count("\n") == 1
    assert r.stderr.startswith("Error: --experimental-websearch needs a search endpoint")


def test_without_websearch_the_tool_is_not_offered(fake: FakeServer, tmp_path: Path) -> None:
    log = fake.script(answers=[[tool_call("web_search", query="x")], ["Done."]])
    r = batch(fake, tmp_path, "--experimental-yolo", TOOLS_MODEL, "search")
    assert r.returncode == 0, r.stderr
    first, last = fake.prompts(log)
    assert '"run_shell"' in first and '"web_search"' not in first
    assert tool_results(last) == ["error: there is no tool named 'web_search'"]


def test_a_model_without_tools_answers_with_a_note(fake: FakeServer, tmp_path: Path) -> None:
    log = fake.script(answers=[["Plain answer."]])
    r = batch(fake, tmp_path, "--experimental", THINKING_MODEL, "hello")
    assert r.returncode == 0, r.stderr
    assert r.stdout == "Plain answer.\n" and "does not support tools" in r.stderr
    assert "run_shell" not in fake.prompts(log)[0]


def test_prompt_loop_until_ctrl_d(fake: FakeServer, tmp_path: Path) -> None:
    log = fake.script(answers=[["First answer."], ["Second answer."]])
    child = spawn(fake, tmp_path, TOOLS_MODEL)
    child.expect_exact(">>> ")
    child.sendline("first question")
    child.expect_exact("First answer.")
    child.expect_exact(">>> ")
    child.sendintr()
    child.expect_exact("Use Ctrl+D or /bye to leave.")
    child.expect_exact(">>> ")
    child.sendline("second question")
    child.expect_exact("Second answer.")
    child.expect_exact(">>> ")
    child.sendeof()
    finish(child)
    assert "first question" in fake.prompts(log)[-1]  # one conversation across the prompts


def test_real_model_reaches_an_answer(pulled: Server, tmp_path: Path) -> None:
    r = subprocess.run([*ROOST, "run", "--experimental", "-o", "temperature=0", "-o", "seed=42",
                        "-o", "num_predict=48", MODEL, "What is the capital of France? One word."],
                       cwd=tmp_path, env=pulled.env(), text=True, capture_output=True,
                       stdin=subprocess.DEVNULL, timeout=180, start_new_session=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() and "Error" not in r.stderr and "Traceback" not in r.stderr
