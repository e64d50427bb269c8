"""`roost run --think` on a thinking model, end to end against a real server.

The bundled 0.5B model does not think, so the server runs the scripted fake runner
(tests/support/fake_runner.py) under a model whose GGUF chat template carries `<think>`, as
a real thinking model's does. Rendering, output parsing and printing are the real code.
"""

from __future__ import annotations

import subprocess
import sys

import pexpect
import pytest

from tests.support import THINKING_MODEL, TOOLS_MODEL, FakeServer

ROOST = [sys.executable, "-m", "roost"]
THOUGHT = ["<think>", "Let me think", " about it.", "</think>", "\n\n", "The answer is 4."]
PLAIN = "Thinking...\nLet me think about it.\n...done thinking.\n\nThe answer is 4.\n"


def roost(fake: FakeServer, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*ROOST, *args], env=fake.server.env(), text=True, capture_output=True,
                          stdin=subprocess.DEVNULL, timeout=60)


def test_thinking_is_printed_apart_from_the_answer(fake: FakeServer) -> None:
    fake.script(rules=[("2+2", THOUGHT)])
    r = roost(fake, "run", "--think", THINKING_MODEL, "What is 2+2?")
    assert r.returncode == 0, r.stderr
    assert r.stdout == PLAIN and r.stderr == ""


def test_hidethinking_prints_only_the_answer(fake: FakeServer) -> None:
    fake.script(rules=[("2+2", THOUGHT)])
    r = roost(fake, "run", "--hidethinking", THINKING_MODEL, "What is 2+2?")
    assert r.returncode == 0, r.stderr
    assert r.stdout == "The answer is 4.\n"


def _in_pty(env: dict[str, str]) -> str:
    """The whole output of one run in a pseudo-terminal (stdin and stdout both a TTY)."""
    child = pexpect.spawn(sys.executable, ["-m", "roost", "run", "--think", THINKING_MODEL, "What is 2+2?"],
                          env=env, encoding="utf-8", timeout=60, dimensions=(24, 200))
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0, child.before
    return str(child.before)


def test_thinking_is_dimmed_on_a_terminal(fake: FakeServer) -> None:
    fake.script(rules=[("2+2", THOUGHT)])
    env = {k: v for k, v in fake.server.env().items() if k != "NO_COLOR"}
    out = _in_pty(env)
    dim, reset = "\x1b[2m", "\x1b[0m"
    assert f"{dim}Let me think about it." in out.replace("\r\n", "\n")
    thinking_end = out.index("...done thinking.")
    assert out.rindex(reset, 0, thinking_end) > out.index(dim)  # the dim ends before the answer
    assert out.index("The answer is 4.") > thinking_end
    assert dim not in out[thinking_end:]


def test_no_color_means_no_escape_codes_on_a_terminal(fake: FakeServer) -> None:
    fake.script(rules=[("2+2", THOUGHT)])
    out = _in_pty(fake.server.env(NO_COLOR="1"))
    assert "\x1b" not in out
    assert out.replace("\r\n", "\n") == PLAIN


@pytest.mark.parametrize("args", [["--think=low"], ["--think", "max"], ["--think=max"]])
def test_think_level_reaches_the_prompt(fake: FakeServer, args: list[str]) -> None:
    """The fake cannot see `think`, but the template renders the level into the prompt it gets."""
    level = args[-1].removeprefix("--think=")
    log = fake.script(rules=[(f"Reasoning: {level}", ["<think>", "briefly", "</think>", "Leveled."])],
                      answers=[["Other."]])
    r = roost(fake, "run", *args, THINKING_MODEL, "What is 2+2?")
    assert r.returncode == 0, r.stderr
    assert r.stdout.endswith("Leveled.\n")
    assert f"Reasoning: {level}" in fake.prompts(log)[-1]


def test_set_think_max_in_the_shell(fake: FakeServer) -> None:
    from tests.cli.test_shell import Shell

    log = fake.script(rules=[("Reasoning: max", ["<think>", "hard", "</think>", "Max effort."])],
                      answers=[["Other."]])
    sh = Shell(fake.server, THINKING_MODEL, ROOST_NOHISTORY="1")
    assert sh.line("/set think max").strip() == "Set 'think' mode to 'max'."
    assert "Max effort." in sh.line("What is 2+2?")
    assert "Reasoning: max" in fake.prompts(log)[-1]
    assert sh.line("/set think maximal").strip().startswith("Invalid think level 'maximal'")
    assert sh.exit() == 0


def test_hidethinking_on_a_model_that_cannot_think_just_answers(fake: FakeServer) -> None:
    """--hidethinking hides thinking; it does not ask a model to think (no --think: the server decides)."""
    fake.script(answers=[["Four."]])
    r = roost(fake, "run", "--hidethinking", TOOLS_MODEL, "What is 2+2?")
    assert r.returncode == 0, r.stderr
    assert r.stdout == "Four.\n" and r.stderr == ""


def test_think_false_closes_the_thinking_in_the_prompt(fake: FakeServer) -> None:
    log = fake.script(answers=[["Four."]])
    r = roost(fake, "run", "--think=false", THINKING_MODEL, "What is 2+2?")
    assert r.returncode == 0, r.stderr
    assert r.stdout == "Four.\n"
    assert fake.prompts(log)[-1].endswith("<think>\n\n</think>\n\n")


def test_think_on_a_model_that_cannot_is_one_line_error(fake: FakeServer) -> None:
    r = roost(fake, "run", "--think", TOOLS_MODEL, "What is 2+2?")
    assert r.returncode == 1
    assert r.stderr.startswith(f'Error: "{TOOLS_MODEL}') and r.stderr.count("\n") == 1
    assert r.stderr.endswith('" does not support thinking\n')
