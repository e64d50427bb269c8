"""The runner process: one loaded model, driven over a socket by the server.

`python -m roost.scheduler.runner_main --fd N --model PATH ...` loads the model, says `ready`,
then loops on one thread: read whatever messages have arrived (without waiting while
sequences are active), run one batched decode step, send the pieces it produced. Keeping
it one thread matters on small machines: a busy second Python thread slows decoding 2x.
"""

from __future__ import annotations

import argparse
import ctypes
import faulthandler
import os
import select
import signal
import socket
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from roost.engines.llamacpp import cpu_buffers, embed
from roost.engines.llamacpp.batcher import Batcher
from roost.engines.llamacpp.embed import Embedder, EmbedError
from roost.engines.llamacpp.model import LoadError, LoadOptions, Model
from roost.scheduler import protocol


def _args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="roost-runner")
    p.add_argument("--fd", type=int, required=True)
    p.add_argument("--model", type=Path, required=True)
    p.add_argument("--num-ctx", type=int, required=True)
    p.add_argument("--num-parallel", type=int, default=1)
    p.add_argument("--num-threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--num-batch", type=int, default=512)
    p.add_argument("--num-gpu", type=int, default=0)
    p.add_argument("--cpu-kernels", choices=cpu_buffers.MODES, default="all")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _args(argv)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the server decides when runners stop
    sock = socket.socket(fileno=args.fd)
    conn = protocol.Connection(sock)
    started = time.perf_counter()
    # Said before loading, so that a server whose runner dies while loading knows what the
    # CPU backend offered (an AMX buffer type is the usual culprit).
    conn.send([{"op": "hello", "extra_buffer_types": list(cpu_buffers.extra_buffer_types()),
                "cpu_features": sorted(cpu_buffers.cpu_features())}])
    try:
        model = Model(LoadOptions(
            path=args.model, num_ctx=args.num_ctx, num_parallel=args.num_parallel,
            num_threads=args.num_threads, num_batch=args.num_batch, num_gpu=args.num_gpu,
            cpu_kernels=args.cpu_kernels,
        ))
        _injected_fault(args.cpu_kernels)
        model.warm_up()
    except LoadError as exc:
        conn.send([{"op": "load_error", "message": str(exc)}])
        return 1
    batcher = Batcher(model)
    lazy = _LazyEmbedder(model, args.num_threads)
    conn.send([{
        "op": "ready", "n_ctx": model.n_ctx_seq, "n_parallel": model.n_seq,
        "size": model.size, "gpu_layers": model.gpu_layers, "cpu_kernels": args.cpu_kernels,
        "load_ns": int((time.perf_counter() - started) * 1e9),
    }])
    try:
        return _loop(conn, batcher, model, lazy)
    finally:
        lazy.close()
        batcher.close()
        model.close()


def _injected_fault(mode: str) -> None:
    """Tests only: die by a real SIGSEGV in warm-up under the listed kernel modes, or hang.

    No machine at hand has the AMX fault, so the server's fallback is tested with a runner
    that faults at the same moment the AMX kernel would: the first decode, before ready.
    """
    modes = os.environ.get("ROOST_TEST_FAULT_WARMUP", "").split(",")
    if mode in modes:
        faulthandler.disable()
        ctypes.string_at(0)  # a real invalid read: the process dies by SIGSEGV
    if "hang" in modes:  # a load that never ends
        signal.pause()


class _LazyEmbedder:
    """The embedding context is made on the first embed request: most models never get one."""

    def __init__(self, model: Model, num_threads: int) -> None:
        self.model, self.num_threads = model, num_threads
        self.embedder: Embedder | None = None

    def handle(self, msg: dict[str, Any]) -> dict[str, Any]:
        if self.embedder is None:
            try:
                self.embedder = Embedder(self.model, self.num_threads)
            except EmbedError as exc:
                return {"op": "error", "id": msg["id"], "message": str(exc)}
        return embed.handle(self.embedder, msg)

    def close(self) -> None:
        if self.embedder is not None:
            self.embedder.close()


def _loop(conn: protocol.Connection, batcher: Batcher, model: Model, lazy: _LazyEmbedder) -> int:
    while True:
        timeout = 0.0 if batcher.busy() else None
        readable, _, _ = select.select([conn.sock], [], [], timeout)
        if readable:
            messages = conn.receive()
            if messages is None:
                return 0  # the server went away
            out: list[dict[str, Any]] = []
            for msg in messages:
                out.extend(_handle_safely(msg, batcher, model, lazy))
            if out:
                conn.send(out)
        if batcher.busy():
            events = batcher.step()
            if events:
                conn.send(events)


def _handle_safely(msg: dict[str, Any], batcher: Batcher, model: Model,
                   lazy: _LazyEmbedder) -> list[dict[str, Any]]:
    """A bug while starting one request fails that request, not every stream on the runner."""
    try:
        return _handle(msg, batcher, model, lazy)
    except Exception as exc:
        traceback.print_exc()
        return [{"op": "error", "id": msg.get("id", -1), "message": f"runner error: {exc}"}]


def _handle(msg: dict[str, Any], batcher: Batcher, model: Model,
            lazy: _LazyEmbedder) -> list[dict[str, Any]]:
    op = msg.get("op")
    if op == "complete":
        return batcher.submit(
            msg["id"], msg["prompt"], msg.get("options") or {}, msg.get("format"),
            msg.get("num_ctx"), msg.get("logprobs"),
        )
    if op == "cancel":
        batcher.cancel(msg["id"])
        return []
    if op == "embed":
        return [lazy.handle(msg)]
    if op == "tokenize":
        return [{"op": "tokens", "id": msg["id"], "tokens": model.tokenize(msg["text"])}]
    return [{"op": "error", "id": msg.get("id", -1), "message": f"unknown op {op!r}"}]


if __name__ == "__main__":
    sys.exit(main())
