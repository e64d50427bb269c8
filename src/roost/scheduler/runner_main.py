"""The runner process: one loaded model, driven over a socket by the server.

`python -m roost.scheduler.runner_main --fd N --model PATH ...` loads the model, says `ready`,
then loops on its main thread: read whatever messages have arrived (without waiting while
sequences are active), run one batched decode step, send the pieces it produced. Work that
would stall that loop (embeddings, preparing a request, tokenizing) runs on side lanes
(roost.engines.llamacpp.side), threads that sleep when idle: a busy second Python thread
slows decoding 2x on small machines, a thread waiting on a queue or inside llama.cpp does not.

The runner never outlives the server: it stops when its socket closes, and the kernel kills
it if the server dies while it is loading or decoding (PR_SET_PDEATHSIG).
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
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from roost.engines.llamacpp import cpu_buffers, sampler
from roost.engines.llamacpp.batcher import Batcher, Sequence
from roost.engines.llamacpp.embed import Embedder, EmbedError
from roost.engines.llamacpp.model import LoadError, LoadOptions, Model
from roost.engines.llamacpp.side import Lane, Mailbox
from roost.scheduler import protocol

Event = dict[str, Any]
EMBED_CHUNK = 32  # vectors per `embeddings` message, so no message grows with the batch
PR_SET_PDEATHSIG = 1  # linux/prctl.h


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
    p.add_argument("--adapter", type=Path, action="append", default=[],
                   help="a LoRA GGUF to apply (repeatable)")
    p.add_argument("--parent-pid", type=int, default=None,
                   help="the server's pid: the runner exits at once if its parent is another")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _args(argv)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the server decides when runners stop
    sock = socket.socket(fileno=args.fd)
    _die_with_parent(args.parent_pid, sock)
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
            cpu_kernels=args.cpu_kernels, adapters=tuple(args.adapter),
        ))
        _injected_fault(args.cpu_kernels)
        model.warm_up()
    except LoadError as exc:
        conn.send([{"op": "load_error", "message": str(exc)}])
        return 1
    batcher = Batcher(model)
    requests = _Requests(model, batcher, args.num_threads)
    conn.send([{
        "op": "ready", "n_ctx": model.n_ctx_seq, "n_parallel": model.n_seq,
        "size": model.size, "gpu_layers": model.gpu_layers, "cpu_kernels": args.cpu_kernels,
        "load_ns": int((time.perf_counter() - started) * 1e9),
    }])
    try:
        code = _loop(conn, batcher, requests)
    except ConnectionError:  # the server went away while we were sending to it
        code = 0
    if not requests.close():  # a lane is still inside llama.cpp: freeing now would crash it
        os._exit(code)
    batcher.close()
    model.close()
    return code


def _die_with_parent(parent_pid: int | None, sock: socket.socket) -> None:
    """Make sure a server killed by -9 leaves no runner behind holding the model's memory.

    The loop returns when the socket closes, but only between decode steps; a runner still
    loading, or in a long prompt's decode, would linger. So the kernel is asked to SIGKILL
    this process when its parent dies. A parent that died before this call is caught by the
    checks after it: another parent pid, or the server's end of the socket already closed.
    To the kernel the parent is the *thread* that spawned this process, so the server must
    spawn runners from one that lives as long as it does (its event loop's), never a pool's.
    """
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if (parent_pid is not None and os.getppid() != parent_pid) or _peer_closed(sock):
        sys.exit(1)


def _peer_closed(sock: socket.socket) -> bool:
    """Before `ready` the server sends nothing, so a readable socket here means end-of-file."""
    readable, _, _ = select.select([sock], [], [], 0)
    if not readable:
        return False
    try:
        return sock.recv(1, socket.MSG_PEEK) == b""
    except OSError:
        return True


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


def _loop(conn: protocol.Connection, batcher: Batcher, requests: _Requests) -> int:
    """Until the server hangs up: take messages and the lanes' results, decode one step."""
    sock, mailbox = conn.sock.fileno(), requests.mailbox.fileno()
    while True:
        timeout = 0.0 if batcher.busy() else None
        readable, _, _ = select.select([sock, mailbox], [], [], timeout)
        out: list[bytes] = []
        if sock in readable:
            messages = conn.receive()
            if messages is None:
                return 0  # the server went away
            for msg in messages:
                out.append(protocol.encode(requests.handle(msg)))
        if mailbox in readable:
            out += requests.collect()
        if any(out):
            conn.send_raw(b"".join(out))
        if batcher.busy():
            events = batcher.step()
            if events:
                conn.send(events)


class _Requests:
    """Routes the server's messages: decoding stays on the loop, the rest goes to side lanes.

    Preparing a completion (tokenize, JSON schema to grammar, sampler chain) and tokenizing
    run on the `prepare` lane, embeddings on the `embed` lane (their own llama context), so
    no stream stalls while they run. Everything that touches the batcher or the socket
    happens back on the loop's thread, in `collect`; that also keeps a request's messages in
    order, and a cancel for a request still on a lane takes effect when the lane is done.
    """

    def __init__(self, model: Model, batcher: Batcher, num_threads: int) -> None:
        self.model, self.batcher, self.num_threads = model, batcher, num_threads
        self.mailbox = Mailbox()
        self.prepare_lane = Lane("roost-prepare")
        self.embed_lane = Lane("roost-embed")
        self.on_lanes: set[int] = set()  # request ids with a job on a lane (loop thread only)
        self.cancelled: set[int] = set()  # ...of which the server gave up on; lanes read it
        self.stopping = False
        self._embedder: Embedder | None = None

    # -- on the loop's thread ------------------------------------------------------------

    def handle(self, msg: Event) -> list[Event]:
        """A bug while starting one request fails that request, not every stream on the runner."""
        try:
            return self._handle(msg)
        except Exception as exc:
            traceback.print_exc()
            return [{"op": "error", "id": msg.get("id", -1), "message": f"runner error: {exc}"}]

    def _handle(self, msg: Event) -> list[Event]:
        op, rid = msg.get("op"), msg.get("id", -1)
        if op == "cancel":
            self.batcher.cancel(rid)
            if rid in self.on_lanes:
                self.cancelled.add(rid)
            return []
        jobs = {"complete": (self.prepare_lane, self._prepare),
                "tokenize": (self.prepare_lane, self._tokenize),
                "detokenize": (self.prepare_lane, self._detokenize),
                "embed": (self.embed_lane, self._embed)}
        if op not in jobs:
            return [{"op": "error", "id": rid, "message": f"unknown op {op!r}"}]
        lane, job = jobs[op]
        self.on_lanes.add(rid)
        lane.submit(lambda: self._guarded(rid, lambda: job(msg)))
        return []

    def collect(self) -> list[bytes]:
        """What the lanes finished, applied and encoded for the socket, in order."""
        out = []
        for item in self.mailbox.take():
            if isinstance(item, bytes):
                out.append(item)
                continue
            rid, apply = item
            try:
                out.append(protocol.encode(apply()))
            except Exception as exc:  # a bug in one request's hand-over fails only that one
                traceback.print_exc()
                out.append(protocol.encode([{"op": "error", "id": rid,
                                             "message": f"runner error: {exc}"}]))
        return out

    def _enqueue(self, rid: int, seq: Sequence | Event) -> list[Event]:
        cancelled = self._forget(rid)
        if not isinstance(seq, Sequence):
            return [] if cancelled else [seq]
        if cancelled or self.stopping:
            sampler.free(seq.chain)
            return []
        self.batcher.enqueue(seq)
        return []

    def _finished(self, rid: int) -> list[Event]:
        """A lane has sent all it had for `rid` (its answer went out as bytes)."""
        self._forget(rid)
        return []

    def _forget(self, rid: int) -> bool:
        """The lanes are done with `rid`; say whether it was cancelled meanwhile."""
        self.on_lanes.discard(rid)
        cancelled = rid in self.cancelled
        self.cancelled.discard(rid)
        return cancelled

    # -- on a lane -----------------------------------------------------------------------

    def _guarded(self, rid: int, job: Callable[[], None]) -> None:
        try:
            job()
        except Exception as exc:
            traceback.print_exc()
            error = {"op": "error", "id": rid, "message": f"runner error: {exc}"}
            self.mailbox.post((rid, lambda: [error] if not self._forget(rid) else []))

    def _prepare(self, msg: Event) -> None:
        seq = self.batcher.prepare(msg["id"], msg["prompt"], msg.get("options") or {},
                                   msg.get("format"), msg.get("num_ctx"), msg.get("logprobs"),
                                   msg.get("grammar"), bool(msg.get("truncate", False)),
                                   bool(msg.get("shift", False)))
        self.mailbox.post((msg["id"], lambda: self._enqueue(msg["id"], seq)))

    def _tokenize(self, msg: Event) -> None:
        tokens = self.model.tokenize(msg["text"], bool(msg.get("add_special", True)),
                                     bool(msg.get("parse_special", True)))
        answer: Event = {"op": "tokens", "id": msg["id"], "tokens": tokens}
        if msg.get("pieces"):  # a piece that is not whole UTF-8 goes as its bytes
            answer["pieces"] = [_text_or_bytes(p) for p in self.model.pieces(tokens)]
        self.mailbox.post(protocol.encode([answer]))
        self.mailbox.post((msg["id"], lambda: self._finished(msg["id"])))

    def _detokenize(self, msg: Event) -> None:
        rid = msg["id"]
        try:
            data = self.model.detokenize(list(msg["tokens"]), bool(msg.get("special", True)))
            answer = {"op": "text", "id": rid, "text": data.decode("utf-8", errors="replace")}
        except ValueError as exc:  # an id outside the vocabulary: the client's error
            answer = {"op": "error", "id": rid, "message": str(exc), "status": 400}
        self.mailbox.post(protocol.encode([answer]))
        self.mailbox.post((rid, lambda: self._finished(rid)))

    def _embed(self, msg: Event) -> None:
        rid = msg["id"]
        try:
            for part in self._embed_parts(msg):
                self.mailbox.post(part)
        except EmbedError as exc:
            self.mailbox.post(protocol.encode([{"op": "error", "id": rid, "message": str(exc),
                                                "status": 400}]))
        self.mailbox.post((rid, lambda: self._finished(rid)))

    def _embed_parts(self, msg: Event) -> Iterator[bytes]:
        """`embeddings` messages of EMBED_CHUNK vectors each; all but the last say `more`."""
        rid = msg["id"]
        embedder = self._embedder_made()
        token_lists = embedder.tokens(list(msg["texts"]), bool(msg.get("truncate", True)),
                                      msg.get("num_ctx"))
        total, count = len(token_lists), sum(map(len, token_lists))
        part: list[list[float]] = []
        vectors = embedder.vectors(token_lists, msg.get("dimensions"), self._embed_threads)
        for done, vector in enumerate(vectors, 1):
            if rid in self.cancelled or self.stopping:
                return
            part.append(vector)
            if len(part) == EMBED_CHUNK or done == total:
                yield protocol.encode([{"op": "embeddings", "id": rid, "embeddings": part,
                                        "more": done < total, "prompt_tokens": count}])
                part = []
        if total == 0:
            yield protocol.encode([{"op": "embeddings", "id": rid, "embeddings": [],
                                    "more": False, "prompt_tokens": 0}])

    def _embedder_made(self) -> Embedder:
        """The embedding context is made on the first embed request: most models never get one."""
        if self._embedder is None:
            self._embedder = Embedder(self.model, self.num_threads)
        return self._embedder

    def _embed_threads(self) -> int:
        """Fewer threads while streams decode: both contexts share the cores."""
        return max(1, self.num_threads // 2) if self.batcher.busy() else self.num_threads

    # -- stopping ------------------------------------------------------------------------

    def close(self) -> bool:
        """Stop the lanes; say whether they stopped (else their llama objects are in use)."""
        self.stopping = True
        stopped = self.prepare_lane.close(1.0) & self.embed_lane.close(1.0)
        if stopped and self._embedder is not None:
            self._embedder.close()
        return stopped


def _text_or_bytes(data: bytes) -> str | list[int]:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return list(data)


if __name__ == "__main__":
    sys.exit(main())
