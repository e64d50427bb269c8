"""Two models loaded at once, served together; one runner's death does not touch the other."""

from __future__ import annotations

import json
import os
import signal
import threading
from pathlib import Path

from tests.conftest import MODEL, Server, greedy
from tests.scheduler.test_runner_lifecycle import runner_pids

GEMMA = "gemma3:270m"


def test_gemma_and_qwen_together(pulled: Server) -> None:
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

    # the qwen runner is the one whose process has the qwen blob open
    qwen_pid = next(p for p in pids_before if _has_blob_open(p, "1d9614638d18"))
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


def _has_blob_open(pid: int, digest_prefix: str) -> bool:
    try:
        maps = Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return False
    return f"sha256-{digest_prefix}" in maps
