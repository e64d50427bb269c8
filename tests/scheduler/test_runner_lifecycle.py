"""Runner processes: a dead runner fails only its requests; concurrent streams stay apart."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
import uuid

from tests.conftest import MODEL, Server, greedy
from tests.support.runner_procs import (
    QWEN_BLOB,
    process_state,
    runner_pids,
    runner_pids_of,
    wait_reaped,
)

__all__ = ["runner_pids"]  # also used by tests/server/test_openai.py


def kill_mid_stream(server: Server) -> dict[str, float]:
    """Load the model, SIGKILL its runner after 3 streamed lines; what the client and /proc saw."""
    with server.client() as c:
        assert c.post("/api/generate", json={"model": MODEL, "keep_alive": "5m"}).status_code == 200
        (pid,) = runner_pids_of(server, QWEN_BLOB)
        lines: list[dict] = []
        killed = errored = 0.0
        with c.stream("POST", "/api/generate", json={
                "model": MODEL, "prompt": "Write a long story about a dragon.",
                "options": greedy(400)}) as r:
            for line in r.iter_lines():
                if not line:
                    continue
                lines.append(json.loads(line))
                if len(lines) == 3:
                    killed = time.monotonic()
                    os.kill(pid, signal.SIGKILL)
                if "error" in lines[-1]:
                    errored = time.monotonic()
        assert "error" in lines[-1] and not lines[-1].get("done"), lines[-3:]
        assert all("error" not in x for x in lines[:3])
        deadline = time.monotonic() + 5
        while MODEL in {m["name"] for m in c.get("/api/ps").json()["models"]}:
            assert time.monotonic() < deadline, "/api/ps still lists the killed model"
            time.sleep(0.01)
        dropped = time.monotonic()
        reaped = wait_reaped(pid, within=5)
        assert reaped is not None, f"runner {pid} left as {process_state(pid)!r}, not reaped"
        r = c.post("/api/generate", json={"model": MODEL, "prompt": "Say hi.",
                                          "stream": False, "options": greedy(5)})
        assert r.status_code == 200 and r.json()["response"]
        new = runner_pids_of(server, QWEN_BLOB)
        assert len(new) == 1 and new != [pid]
    return {"error_s": errored - killed, "ps_drop_s": dropped - killed,
            "reaped_s": dropped - killed + reaped}


def test_runner_killed_mid_stream_then_recovers(pulled: Server) -> None:
    """The client gets an error line within 1 s, /api/ps drops the model, the process is
    reaped (no zombie), and the next request loads a new runner and answers."""
    seen = kill_mid_stream(pulled)
    assert seen["error_s"] < 1.0, seen
    assert seen["ps_drop_s"] < 2.0, seen


def test_an_idle_runner_killed_leaves_ps_without_a_request(pulled: Server) -> None:
    with pulled.client() as c:
        assert c.post("/api/generate", json={"model": MODEL, "keep_alive": "5m"}).status_code == 200
        (pid,) = runner_pids_of(pulled, QWEN_BLOB)
        os.kill(pid, signal.SIGKILL)
        killed = time.monotonic()
        while MODEL in {m["name"] for m in c.get("/api/ps").json()["models"]}:
            assert time.monotonic() - killed < 2, "/api/ps still lists the killed model"
            time.sleep(0.01)
        assert wait_reaped(pid, within=5) is not None, process_state(pid)


def test_concurrent_streams_do_not_cross(pulled: Server) -> None:
    words = {"apple": "", "zebra": ""}

    def ask(word: str) -> None:
        with pulled.client() as c:
            r = c.post("/api/chat", json={
                "model": MODEL, "stream": False, "options": greedy(20),
                "messages": [{"role": "user",
                              "content": f"Repeat the word '{word}' three times, nothing else."}]})
            words[word] = r.json()["message"]["content"].lower()

    threads = [threading.Thread(target=ask, args=(w,)) for w in words]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert time.monotonic() - started < 120
    assert "apple" in words["apple"] and "zebra" not in words["apple"]
    assert "zebra" in words["zebra"] and "apple" not in words["zebra"]


def test_second_chat_turn_reuses_the_prefix(pulled: Server) -> None:
    nonce = uuid.uuid4().hex
    system = f"Session {nonce}. " + "You answer with one short word, nothing more. " * 8
    messages = [{"role": "system", "content": system},
                {"role": "user", "content": "Name a colour."}]
    with pulled.client() as c:
        first = c.post("/v1/chat/completions", json={"model": MODEL, "messages": messages,
                                                     "max_tokens": 8, "temperature": 0}).json()
        messages += [first["choices"][0]["message"], {"role": "user", "content": "Name another."}]
        second = c.post("/v1/chat/completions", json={"model": MODEL, "messages": messages,
                                                      "max_tokens": 8, "temperature": 0}).json()
    # The first turn evaluates the whole unseen system prompt (over 80 tokens); the second
    # only the reply and the new question: the rest is its cached prefix.
    evaluated = [u["prompt_tokens"] - u["prompt_tokens_details"]["cached_tokens"]
                 for u in (first["usage"], second["usage"])]
    assert evaluated[0] > 80
    assert evaluated[1] < 30
    assert second["usage"]["prompt_tokens"] > first["usage"]["prompt_tokens"] > 80
