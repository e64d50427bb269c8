"""Embeddings come back from the runner in parts, so no message grows with the batch; the
server puts them together in order.

Real runner, real model: one driven directly over its socket (to see the messages), and the
session server (to see the assembled answer).
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import pytest

from tests.conftest import MODEL, Server
from tests.support.runner_side import RunnerProcess, weights

WORDS = ["apple", "violin", "glacier", "tax law", "football", "volcano", "jazz", "compiler"]
TEXTS = [f"{WORDS[i % len(WORDS)]} number {i}" for i in range(70)]  # parts of 32, 32 and 6


@pytest.fixture(scope="module")
def runner(pulled: Server) -> Iterator[RunnerProcess]:
    proc = RunnerProcess(weights(pulled.home))
    try:
        yield proc
    finally:
        proc.close()


def _cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True)) / math.sqrt(
        sum(x * x for x in a) * sum(y * y for y in b))


def test_a_batch_comes_in_parts_of_32(runner: RunnerProcess) -> None:
    runner.send({"op": "embed", "id": 1, "texts": TEXTS, "truncate": True})
    parts = [m for m in runner.until(1, "embeddings") if m.get("id") == 1]
    while parts[-1].get("more"):
        parts += [m for m in runner.until(1, "embeddings") if m.get("id") == 1]
    assert [len(p["embeddings"]) for p in parts] == [32, 32, 6]
    assert [p["more"] for p in parts] == [True, True, False]
    assert parts[-1]["prompt_tokens"] >= len(TEXTS)


def test_the_server_assembles_the_parts_in_order(pulled: Server) -> None:
    with pulled.client() as c:
        batch = c.post("/api/embed", json={"model": MODEL, "input": TEXTS}).json()["embeddings"]
        picks = [0, 31, 32, 40, 69]  # either side of each part boundary
        alone = {i: c.post("/api/embed", json={"model": MODEL, "input": TEXTS[i]}).json()
                 ["embeddings"][0] for i in picks}
    assert len(batch) == len(TEXTS)
    for i in picks:
        scores = {j: _cosine(batch[i], alone[j]) for j in picks}
        assert max(scores, key=lambda j: scores[j]) == i, (i, scores)
        assert scores[i] > 0.99, (i, scores[i])


def test_an_empty_batch_and_a_bad_text_answer_cleanly(runner: RunnerProcess) -> None:
    runner.send({"op": "embed", "id": 2, "texts": [], "truncate": True},
                {"op": "embed", "id": 3, "texts": ["word " * 3000], "truncate": False})
    empty = runner.until(2, "embeddings", "error")[-1]
    assert empty == {"op": "embeddings", "id": 2, "embeddings": [], "more": False, "prompt_tokens": 0}
    error = runner.until(3, "embeddings", "error")[-1]
    assert error["op"] == "error" and error["status"] == 400 and "longer than" in error["message"]
