"""Side work (embeddings, request preparation) runs beside the decode loop, not in it.

Real server, real model. A stream runs; an embedding batch that takes the model seconds is
sent beside it. Before, the runner embedded between two decode steps and the stream stood
still for the whole batch; now the stream keeps producing tokens while the batch runs.
A runner driven directly over its socket shows what the API cannot: a cancel that arrives
while a request is still being prepared on the side.
"""

from __future__ import annotations

import statistics
import threading
import time

import httpx2 as httpx

from tests.conftest import MODEL, Server, greedy
from tests.support.runner_side import RunnerProcess, timed_stream, weights

STORY = {"model": MODEL, "prompt": "Write a long story about a dragon who learns to sail.",
         "options": greedy(300)}
TEXTS = [f"Sentence {i} is about the topic number {i % 7}, told in a few more words." for i in range(16)]
BASELINE_PIECES = 12  # pieces measured before the batch is sent


def test_a_big_embed_batch_does_not_stall_a_stream(pulled: Server) -> None:
    window: dict[str, float] = {}
    result: dict[str, httpx.Response] = {}

    def embed() -> None:
        with pulled.client(timeout=600) as c:
            window["start"] = time.monotonic()
            result["r"] = c.post("/api/embed", json={"model": MODEL, "input": TEXTS})
            window["end"] = time.monotonic()

    side = threading.Thread(target=embed)

    def on_piece(n: int) -> bool:
        if n == BASELINE_PIECES:
            side.start()
        # Enough pieces after the batch to see the stream run on; then hang up.
        return "end" in window and n > BASELINE_PIECES + 4

    with pulled.client() as c:
        c.post("/api/generate", json={"model": MODEL, "keep_alive": "5m"})
        c.post("/api/embed", json={"model": MODEL, "input": ["warm up"]})  # the context exists
        stream = timed_stream(c, "/api/generate", STORY, on_piece)
    side.join(600)
    r = result["r"]
    assert r.status_code == 200 and len(r.json()["embeddings"]) == len(TEXTS), r.text[:300]

    baseline = statistics.median(stream.gaps()[1:BASELINE_PIECES - 1])
    start, end = window["start"], min(window["end"], stream.times[-1])
    during = stream.gaps(start, end)
    print(f"baseline median {baseline * 1e3:.0f} ms; embed {window['end'] - start:.1f} s; "
          f"{len(during)} gaps inside it, largest {max(during, default=0) * 1e3:.0f} ms; "
          f"largest gap of the stream after it began {max(stream.gaps(start)) * 1e3:.0f} ms")
    # Before, the runner embedded between two steps: no piece at all while the batch ran.
    assert len(during) >= 5, (len(during), end - start)
    # The batch shares the cores, so steps are slower, but no gap is a stall.
    assert max(during) < 15 * baseline, (max(during), baseline)


def test_a_cancel_while_preparing_drops_the_request(pulled: Server) -> None:
    schema = {"type": "object", "properties": {f"f{i}": {"type": "string"} for i in range(50)}}
    prompt = "<|im_start|>user\nSay hi.<|im_end|>\n<|im_start|>assistant\n"
    runner = RunnerProcess(weights(pulled.home))
    try:
        # One write: the cancel is read while the first request is on the preparing lane.
        runner.send({"op": "complete", "id": 1, "prompt": prompt, "format": schema,
                     "options": greedy(8)},
                    {"op": "cancel", "id": 1},
                    {"op": "complete", "id": 2, "prompt": prompt, "options": greedy(8)})
        seen = runner.until(2, "done", "error")
        runner.send({"op": "tokenize", "id": 3, "text": "hello"})
        seen += runner.until(3, "tokens")
    finally:
        runner.close()
    assert [m for m in seen if m.get("id") == 1] == []
    assert seen[-2]["op"] == "done" and seen[-2]["eval_count"] > 0
