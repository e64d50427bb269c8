"""A failed llama_decode costs no stream: the batch is halved and retried; only a sequence
whose lone token still fails gets an error, and only that one.

The failures are FAKE: a real one (the KV cache out of cells) cannot be provoked reliably
with a small model, so the server runs with ROOST_TEST_FAULT_DECODE
(roost.engines.llamacpp.fault), which makes the runner treat chosen decode calls as if
llama.cpp had returned 1. The model, server and batcher are real; the outputs are compared
with the same requests on an undisturbed server.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import httpx2 as httpx
import pytest

from tests.conftest import MODEL, Server, greedy, start_server, stop_server

# Prompts whose greedy answers have no near ties. A batch composed differently (requests
# arriving apart, a reused prefix, a split) changes the last bits of the logits, and some
# prompts' answers flip on that even undisturbed ("Repeat 'zebra'...", "Write a haiku...");
# these gave one answer alone, together, staggered, reversed and split into 2-token batches.
PROMPTS = ["Count from one to ten in words.", "List the days of the week.",
           "Write the alphabet in capital letters, separated by spaces."]
LONG_PROMPT = "Summarise this list: " + ", ".join(f"item {i}" for i in range(12))
# Every batch over 2 tokens fails, so prompts go in halves of halves and every step of
# three streams is split; a batch holding a position >= 64 fails (only LONG_PROMPT gets
# there: the others' prompts and answers stay under 55 tokens).
FAULTS = "over:2,pos:64"
NUM_PREDICT = 12


@pytest.fixture(scope="module")
def faulty(pulled: Server) -> Iterator[Server]:
    """One decode thread: its many 1- and 2-token decodes then wait on no thread barrier,
    which on a busy 2-core machine made this test 3-4x slower (the answers are the same)."""
    srv = start_server(pulled.home, {"ROOST_TEST_FAULT_DECODE": FAULTS, "ROOST_NUM_THREADS": "1"})
    try:
        yield srv
    finally:
        stop_server(srv)


def _together(server: Server, prompts: list[str], num_predict: int = NUM_PREDICT) -> list[httpx.Response]:
    """The prompts sent at once, so their sequences share the runner's batches."""
    out: list[httpx.Response | None] = [None] * len(prompts)

    def ask(i: int) -> None:
        with server.client() as c:
            out[i] = c.post("/api/generate", json={"model": MODEL, "prompt": prompts[i],
                                                   "stream": False, "options": greedy(num_predict)})

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(prompts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert all(r is not None for r in out)
    return [r for r in out if r is not None]


def test_streams_survive_failed_decodes_with_the_same_output(pulled: Server, faulty: Server) -> None:
    expected = [r.json()["response"] for r in _together(pulled, PROMPTS)]
    got = _together(faulty, PROMPTS)
    assert [r.status_code for r in got] == [200] * len(PROMPTS), [r.text for r in got]
    assert [r.json()["response"] for r in got] == expected
    assert all(r.json()["eval_count"] == NUM_PREDICT or r.json()["done_reason"] == "stop" for r in got)
    failed = _injected(faulty)
    assert len(failed) > 10 and max(failed) > 16, failed  # whole prompts, then their halves


def _injected(server: Server) -> list[int]:
    """The sizes of the batches the fault hook failed, from the server's log."""
    lines = server.log.read_text(errors="replace").splitlines()
    return [int(line.split("(")[1].split()[0]) for line in lines
            if line.startswith("ROOST_TEST_FAULT_DECODE: failing")]


def test_only_the_sequence_that_cannot_decode_fails(pulled: Server, faulty: Server) -> None:
    expected = [r.json()["response"] for r in _together(pulled, PROMPTS[:2])]
    long, *short = _together(faulty, [LONG_PROMPT, *PROMPTS[:2]])
    assert [r.status_code for r in short] == [200, 200], [r.text for r in short]
    assert [r.json()["response"] for r in short] == expected
    assert long.status_code == 503, long.text
    assert "out of context memory" in long.json()["error"]
