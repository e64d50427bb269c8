"""A scripted stand-in for the model runner: a FAKE, for tool calls and thinking only.

The bundled qwen2.5-coder:0.5b calls tools unreliably and does not think at all, so the tests
of `roost run --think` and of the agent loop would otherwise test the model's mood. With
`ROOST_TEST_RUNNER_MODULE=tests.support.fake_runner` in the server's environment, the server
spawns this module instead of `roost.scheduler.runner_main`; it speaks the same protocol
(roost.scheduler.protocol) but, instead of running a model, replays a script. Everything
around it (the server, template rendering, output parsing, the CLI) is the real code. Never
use it to test what a real model produces.

The script is a JSON file named by `ROOST_FAKE_SCRIPT`, read again on every request, so a
test can rewrite it between runs without restarting the server:

    {
      "rules":   [{"match": "text in the prompt", "answer": ["piece", "piece"]}, ...],
      "answers": [["piece", ...], ["piece", ...]],
      "log":     "/path/prompts.jsonl"
    }

For each `complete`, the first rule whose `match` occurs in the rendered prompt answers;
otherwise the next entry of `answers` does, in order (the position starts again at 0 whenever
the file's text changes; it is kept per runner process, that is per model weights, so a
script of `answers` serves one model). When neither gives an answer the text is `FAKE_EXHAUSTED`. Each
answer is a list of text pieces, sent as one `piece` message each, e.g. `["<think>", "Let me
think", "</think>", "The answer is 4."]` or a Qwen-style `<tool_call>\\n{"name": ..., "arguments":
{...}}\\n</tool_call>`. With `log`, every prompt is appended to that file as one JSON string per
line, so a test can check what the model was shown (a tool's result, a thinking level).
"""

from __future__ import annotations

import argparse
import json
import os
import select
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Any

from roost.scheduler import protocol

FAKE_EXHAUSTED = "[fake runner: nothing scripted for this prompt]"
EMBED_DIMS = 8


class Script:
    """The script file, re-read per request; `answers` advance only while its text is unchanged."""

    def __init__(self, path: str) -> None:
        self.path = Path(path) if path else None
        self.text = ""
        self.position = 0

    def answer(self, prompt: str) -> list[str]:
        data = self._load()
        log = data.get("log")
        if log:
            with open(log, "a", encoding="utf-8") as f:
                f.write(json.dumps(prompt) + "\n")
        for rule in data.get("rules") or []:
            if rule["match"] in prompt:
                return [str(p) for p in rule["answer"]]
        answers = data.get("answers") or []
        if self.position < len(answers):
            self.position += 1
            return [str(p) for p in answers[self.position - 1]]
        return [FAKE_EXHAUSTED]

    def _load(self) -> dict[str, Any]:
        text = self.path.read_text(encoding="utf-8") if self.path and self.path.exists() else "{}"
        if text != self.text:
            self.text, self.position = text, 0
        data = json.loads(text)
        return data if isinstance(data, dict) else {}


def handle(msg: dict[str, Any], script: Script) -> list[dict[str, Any]]:
    """One request in, its whole answer out: a fake has no reason to interleave streams."""
    op, rid = msg.get("op"), msg.get("id", -1)
    if op == "complete":
        started = time.perf_counter()
        pieces = script.answer(str(msg.get("prompt", "")))
        out: list[dict[str, Any]] = [{"op": "piece", "id": rid, "text": p} for p in pieces]
        ns = int((time.perf_counter() - started) * 1e9)
        prompt_tokens = len(str(msg.get("prompt", "")).split())
        out.append({"op": "done", "id": rid, "reason": "stop", "prompt_tokens": prompt_tokens,
                    "prompt_eval_count": prompt_tokens, "prompt_eval_ns": ns,
                    "eval_count": len(pieces), "eval_ns": ns})
        return out
    if op == "cancel":
        return []
    if op == "tokenize":  # one "token" per word, as the done message counts them
        return [{"op": "tokens", "id": rid, "tokens": list(range(len(str(msg.get("text", "")).split())))}]
    if op == "detokenize":  # the fake's tokens carry no text: one word per token
        return [{"op": "text", "id": rid, "text": " ".join("w" for _ in msg.get("tokens") or [])}]
    if op == "embed":
        texts = [str(t) for t in msg.get("texts") or []]
        vectors = [[1.0] + [0.0] * (EMBED_DIMS - 1) for _ in texts]
        return [{"op": "embeddings", "id": rid, "embeddings": vectors,
                 "prompt_tokens": sum(len(t.encode()) for t in texts)}]
    return [{"op": "error", "id": rid, "message": f"unknown op {op!r}"}]


def _handle_safely(msg: dict[str, Any], script: Script) -> list[dict[str, Any]]:
    """A broken script fails its request with a message the test can read; the runner lives on."""
    try:
        return handle(msg, script)
    except Exception as exc:
        return [{"op": "error", "id": msg.get("id", -1), "message": f"fake runner: {exc!r}"}]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="fake-runner")
    p.add_argument("--fd", type=int, required=True)
    p.add_argument("--model", type=Path, required=True)
    p.add_argument("--num-ctx", type=int, required=True)
    p.add_argument("--num-parallel", type=int, default=1)
    p.add_argument("--num-threads", type=int, default=1)
    p.add_argument("--num-batch", type=int, default=512)
    p.add_argument("--num-gpu", type=int, default=0)
    p.add_argument("--cpu-kernels", default="all")
    p.add_argument("--parent-pid", type=int, default=None)  # the real runner dies with it
    args = p.parse_args(argv)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # as the real runner: the server stops it
    conn = protocol.Connection(socket.socket(fileno=args.fd))
    conn.send([{"op": "hello", "extra_buffer_types": [], "cpu_features": []}])
    conn.send([{"op": "ready", "n_ctx": args.num_ctx, "n_parallel": args.num_parallel,
                "size": args.model.stat().st_size, "gpu_layers": 0,
                "cpu_kernels": args.cpu_kernels, "load_ns": 1}])
    script = Script(os.environ.get("ROOST_FAKE_SCRIPT", ""))
    while True:
        select.select([conn.sock], [], [])
        messages = conn.receive()
        if messages is None:
            return 0  # the server went away
        out = [reply for msg in messages for reply in _handle_safely(msg, script)]
        if out:
            conn.send(out)


if __name__ == "__main__":
    sys.exit(main())
