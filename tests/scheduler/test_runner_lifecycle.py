"""Runner processes: a dead runner fails only its requests; concurrent streams stay apart."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
import uuid

from tests.conftest import MODEL, Server, greedy


def runner_pids(server: Server) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(server.proc.pid), "-f", "runner_main"],
                         capture_output=True, text=True)
    return [int(p) for p in out.stdout.split()]


def test_runner_killed_mid_stream_then_recovers(pulled: Server) -> None:
    with pulled.client() as c:
        c.post("/api/generate", json={"model": MODEL, "keep_alive": "5m"})
        pids = runner_pids(pulled)
        assert len(pids) == 1
        lines = []
        with c.stream("POST", "/api/generate", json={
            "model": MODEL, "prompt": "Write a long story about a dragon.",
            "options": greedy(400)}) as r:
            for line in r.iter_lines():
                if not line:
                    continue
                lines.append(json.loads(line))
                if len(lines) == 3:
                    os.kill(pids[0], signal.SIGKILL)
        assert "error" in lines[-1] and not lines[-1].get("done")
        assert all("error" not in x for x in lines[:3])
        r = c.post("/api/generate", json={"model": MODEL, "prompt": "Say hi.",
                                          "stream": False, "options": greedy(5)})
        assert r.status_code == 200 and r.json()["response"]
        new = runner_pids(pulled)
        assert len(new) == 1 and new != pids


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
        first = c.post("/api/chat", json={"model": MODEL, "messages": messages,
                                          "stream": False, "options": greedy(8)}).json()
        messages += [first["message"], {"role": "user", "content": "Name another."}]
        second = c.post("/api/chat", json={"model": MODEL, "messages": messages,
                                           "stream": False, "options": greedy(8)}).json()
    # The first turn evaluates the whole unseen system prompt (over 80 tokens); the second
    # only the reply and the new question.
    assert first["prompt_eval_count"] > 80
    assert second["prompt_eval_count"] < 30
