"""`roost run`'s options, as a script uses them: real CLI, real server, real model."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import MODEL, Server, one_line_error
from tests.conftest import roost_cli as roost

ROOST = [sys.executable, "-m", "roost"]
SHORT = ["-o", "temperature=0", "-o", "num_predict=24"]


def test_format_json_prints_json(pulled: Server) -> None:
    r = roost(pulled, "run", "--format", "json", *SHORT[:2], "-o", "num_predict=60", MODEL,
              "Give a JSON object with a key 'colour' naming a colour.")
    assert r.returncode == 0, r.stderr
    json.loads(r.stdout)


def test_format_schema_from_a_file(pulled: Server, tmp_path: Path) -> None:
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    path = tmp_path / "schema.json"
    path.write_text(json.dumps(schema))
    r = roost(pulled, "run", "--format", str(path), *SHORT[:2], "-o", "num_predict=30", MODEL,
              "Give a number as JSON.")
    assert r.returncode == 0, r.stderr
    assert isinstance(json.loads(r.stdout)["n"], int)


@pytest.mark.parametrize("args", [
    ["--keepalive", "forever"], ["-o", "bogus=1"], ["-o", "num_ctx=2147483648"],
    ["-o", "temperature"], ["--format", "/no/such/schema.json"], ["--format", "{not json"],
    ["--think=sometimes"], ["--dimensions", "0"],
])
def test_bad_values_are_one_line_and_exit_1(pulled: Server, args: list[str]) -> None:
    one_line_error(roost(pulled, "run", *args, MODEL, "hi"))


def test_options_and_system_reach_the_model(pulled: Server) -> None:
    r = roost(pulled, "run", "--system", "Whatever the user says, reply with exactly one word: PINEAPPLE.",
              *SHORT, MODEL, "Hello there, how are you?")
    assert r.returncode == 0, r.stderr
    assert "PINEAPPLE" in r.stdout.upper()


def test_embedding_output_is_a_json_array(pulled: Server) -> None:
    r = roost(pulled, "run", "--dimensions", "8", MODEL, "rivers and mountains")
    assert r.returncode == 0, r.stderr
    vector = json.loads(r.stdout)
    assert len(vector) == 8 and all(isinstance(x, float) for x in vector)
    r = roost(pulled, "run", "--truncate", MODEL, "rivers")
    assert r.returncode == 0 and len(json.loads(r.stdout)) == 896


def test_piped_output_has_no_escape_codes(pulled: Server) -> None:
    env = {k: v for k, v in pulled.env().items() if k != "NO_COLOR"}
    r = subprocess.run([*ROOST, "run", "--verbose", *SHORT, MODEL, "Say hi."], env=env, text=True,
                       capture_output=True, timeout=120)
    assert r.returncode == 0 and "\x1b" not in r.stdout + r.stderr


def test_no_model_without_a_terminal(pulled: Server) -> None:
    one_line_error(roost(pulled, "run", stdin=""))
    one_line_error(roost(pulled, "run", "-c", MODEL, stdin=""))


def test_saved_messages_start_the_conversation(pulled: Server) -> None:
    """MESSAGE layers are prepended by the server in /api/chat, as Ollama does."""
    messages = [{"role": "user", "content": "Remember the code word: ZANZIBAR-7."},
                {"role": "assistant", "content": "I will remember ZANZIBAR-7."}]
    with pulled.client() as c:
        r = c.post("/api/create", json={"model": "remembers:1", "from": MODEL, "messages": messages,
                                        "stream": False})
        assert r.status_code == 200, r.text
        ask = {"messages": [{"role": "user", "content": "What was the code word?"}], "stream": False,
               "options": {"temperature": 0, "num_predict": 16}}
        with_history = c.post("/api/chat", json={"model": "remembers:1", **ask}).json()
        without = c.post("/api/chat", json={"model": MODEL, **ask}).json()
        assert "ZANZIBAR" in with_history["message"]["content"].upper()
        r = c.post("/v1/chat/completions", json={"model": "remembers:1", "max_tokens": 16,
                                                 "temperature": 0, "messages": ask["messages"]})
        assert r.json()["usage"]["prompt_tokens"] > without["prompt_eval_count"] + 10
    try:
        r = roost(pulled, "run", *SHORT, "remembers:1", "What was the code word?")
        assert r.returncode == 0 and "ZANZIBAR" in r.stdout.upper(), r.stdout
    finally:
        roost(pulled, "rm", "remembers:1")


def test_no_model_on_a_terminal_offers_the_store(pulled: Server) -> None:
    import pexpect

    with pulled.client() as c:  # the most recent model in a store other tests share
        assert c.post("/api/pull", json={"model": MODEL, "stream": False}).status_code == 200
    env = {**pulled.env(), "PROMPT_TOOLKIT_NO_CPR": "1"}
    for key, code in (("\x1b", 0), ("q", 0), ("\x03", 130)):  # Esc and q leave; Ctrl+C interrupts
        child = pexpect.spawn(sys.executable, ["-m", "roost", "run"], env=env, encoding="utf-8",
                              dimensions=(24, 100), timeout=60)
        child.expect("Select a model")
        child.expect(MODEL)
        child.send(key)
        child.expect(pexpect.EOF)
        child.close()
        assert child.exitstatus == code, (repr(key), child.before)
        assert "Error" not in str(child.before) and ">>> " not in str(child.before)
    child = pexpect.spawn(sys.executable, ["-m", "roost", "run"], env=env, encoding="utf-8",
                          dimensions=(24, 100), timeout=60)
    child.expect(MODEL)
    child.send("\r")  # the first (most recent) model
    child.expect(">>> ")
    child.sendcontrol("d")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
