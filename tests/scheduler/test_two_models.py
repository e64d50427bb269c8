"""Two models loaded at once, served together; one runner's death does not touch the other."""

from __future__ import annotations

import json
import os
import signal
import threading
from collections.abc import Iterator

import pytest

from tests.conftest import MODEL, Server, greedy
from tests.support.runner_procs import QWEN_BLOB, runner_pids, runner_pids_of

GEMMA = "gemma3:270m"


@pytest.fixture
def gemma(pulled: Server) -> Iterator[str]:
    """gemma3:270m pulled into the shared server, and unloaded after the test whatever happens,
    so that the tests after this one find only the runners they load themselves."""
    try:
        yield GEMMA
    finally:
        with pulled.client() as c:
            c.post("/api/generate", json={"model": GEMMA, "keep_alive": 0})


def test_gemma_and_qwen_together(pulled: Server, gemma: str) -> None:
    with pulled.client() as c:
        r = c.post("/api/pull", json={"model": GEMMA, "stream": False})
        assert r.json() == {"status": "success"}
        info = c.post("/api/show", json={"model": GEMMA}).json()
        assert info["details"]["family"] == "gemma3" and "start_of_turn" in info["template"]
        for model in (MODEL, GEMMA):
            c.post("/api/generate", json={"model": model, "keep_alive": "5m"})
        loaded = {m["name"] for m in c.get("/api/ps").json()["models"]}
        assert {MODEL, GEMMA} <= loaded
    pids_before = set(runner_pids(pulled))
    assert len(pids_before) >= 2

    results: dict[str, list[dict]] = {}

    def stream(model: str, kill_after: int | None) -> None:
        lines: list[dict] = []
        with pulled.client() as c, c.stream("POST", "/api/chat", json={
                "model": model, "options": greedy(40),
                "messages": [{"role": "user", "content": "Tell me about the moon."}]}) as r:
            for line in r.iter_lines():
                if not line:
                    continue
                lines.append(json.loads(line))
                if kill_after is not None and len(lines) == kill_after:
                    os.kill(qwen_pid, signal.SIGKILL)
        results[model] = lines

    (qwen_pid,) = runner_pids_of(pulled, QWEN_BLOB)
    threads = [threading.Thread(target=stream, args=(GEMMA, None)),
               threading.Thread(target=stream, args=(MODEL, 3))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert "error" in results[MODEL][-1]
    gemma = results[GEMMA]
    assert gemma[-1]["done"] is True and "error" not in gemma[-1]
    assert "".join(x["message"]["content"] for x in gemma).strip()

