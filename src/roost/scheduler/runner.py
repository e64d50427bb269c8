"""The server's handle on one runner process: spawn it, multiplex requests, notice its death.

The runner is a child process (`roost.scheduler.runner_main`) joined to the server by a
socketpair. Requests carry ids; one reader task routes each incoming message to the queue
of its request. If the process dies, every request in flight gets an error and the handle
reports itself dead (`wait_closed` returns), so the scheduler drops it at once and starts a
fresh one next time.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from roost.core import CoreRequest, Done, Piece
from roost.scheduler import protocol

# The longest line a runner may send: a batch of embeddings is one message (18 KB a vector
# for a 896-wide model), and a longer line would mark the whole runner dead.
MAX_MESSAGE = 256 * 1024 * 1024


class RunnerError(RuntimeError):
    """The runner failed a request, or died while serving it."""

    def __init__(self, message: str, status: int = 500) -> None:
        super().__init__(message)
        self.status = status


class LoadRefused(RunnerError):
    """llama.cpp refused the model file or could not make its context: retrying will not help."""


class RunnerCrashed(RunnerError):
    """The runner died by a signal before it was ready: a CPU kernel the machine cannot run?"""

    def __init__(self, signum: int, extra_buffer_types: list[str]) -> None:
        self.signal_name = _signal_name(signum)
        super().__init__(f"the model runner died by {self.signal_name} while loading")
        self.extra_buffer_types = extra_buffer_types


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


@dataclass(frozen=True)
class RunnerSpec:
    model_path: Path
    num_ctx: int
    num_parallel: int
    num_threads: int
    num_gpu: int = 0
    cpu_kernels: str = "all"  # which CPU buffer types may hold weights (scheduler.cpu_kernels)
    load_timeout: float = 300.0  # a runner not ready by then is killed
    adapters: tuple[Path, ...] = ()  # LoRA GGUFs the runner applies at load


class Runner:
    def __init__(self, proc: asyncio.subprocess.Process, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter, ready: dict[str, Any]) -> None:
        self.proc = proc
        self._reader = reader
        self._writer = writer
        self.n_ctx: int = ready["n_ctx"]
        self.n_parallel: int = ready["n_parallel"]
        self.size: int = ready["size"]
        self.gpu_layers: int = ready.get("gpu_layers", 0)
        self.load_ns: int = ready["load_ns"]
        self.cpu_kernels: str = ready.get("cpu_kernels", "all")
        self._ids = itertools.count(1)
        self._queues: dict[int, asyncio.Queue[dict[str, Any]]] = {}
        self._dead = False
        self._closed = asyncio.Event()  # set once the runner can serve nothing more
        self._task = asyncio.create_task(self._read_loop())

    @classmethod
    async def spawn(cls, spec: RunnerSpec, log: IO[bytes] | None = None) -> Runner:
        parent, child = socket.socketpair()
        # Tests only: a scripted stand-in that speaks the same protocol, for what no small
        # model shows reliably (tool calls, thinking). Nothing else sets it.
        module = os.environ.get("ROOST_TEST_RUNNER_MODULE") or "roost.scheduler.runner_main"
        cmd = [
            sys.executable, "-m", module,
            "--fd", str(child.fileno()), "--model", str(spec.model_path),
            "--num-ctx", str(spec.num_ctx), "--num-parallel", str(spec.num_parallel),
            "--num-threads", str(spec.num_threads), "--num-gpu", str(spec.num_gpu),
            "--cpu-kernels", spec.cpu_kernels,
            *[arg for path in spec.adapters for arg in ("--adapter", str(path))],
            # The runner dies with this process (PR_SET_PDEATHSIG follows the spawning thread:
            # spawn only from the event loop's thread, never from a pool).
            "--parent-pid", str(os.getpid()),
        ]
        proc = await asyncio.create_subprocess_exec(
            *cmd, pass_fds=(child.fileno(),), stdin=asyncio.subprocess.DEVNULL,
            stdout=log, stderr=log,  # None: inherit the server's stderr (its log)
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        child.close()
        reader, writer = await asyncio.open_unix_connection(sock=parent, limit=MAX_MESSAGE)
        hello: dict[str, Any] = {}
        try:
            async with asyncio.timeout(spec.load_timeout):
                while line := await reader.readline():
                    msg = json.loads(line)
                    if msg.get("op") != "hello":
                        break
                    hello = msg
        except BaseException as exc:  # too slow, or the request was cancelled: no orphan
            writer.close()
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await asyncio.shield(proc.wait())
            if isinstance(exc, TimeoutError):
                raise RunnerError(f"the model did not load within {spec.load_timeout:g} s "
                                  "(ROOST_LOAD_TIMEOUT)", 504) from None
            raise
        if not line:
            writer.close()
            code = await proc.wait()
            if code < 0:
                raise RunnerCrashed(-code, list(hello.get("extra_buffer_types") or []))
            raise RunnerError(f"the model runner exited while loading (code {code})")
        if msg.get("op") != "ready":
            writer.close()
            await proc.wait()
            raise LoadRefused(msg.get("message", "the model failed to load"))
        return cls(proc, reader, writer, msg)

    @property
    def alive(self) -> bool:
        return not self._dead and self.proc.returncode is None

    @property
    def pid(self) -> int:
        return self.proc.pid

    async def wait_closed(self) -> None:
        """Return when the runner has died or been stopped: the scheduler's cue to drop it."""
        await self._closed.wait()

    async def complete(self, req: CoreRequest) -> AsyncIterator[Piece | Done]:
        """Yield text pieces, then one Done; cancel the sequence if the caller stops early."""
        rid = next(self._ids)
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._queues[rid] = queue
        finished = False
        try:
            self._send({
                "op": "complete", "id": rid, "prompt": req.prompt,
                "options": req.sampling.to_json(), "format": req.format, "num_ctx": req.num_ctx,
                "logprobs": req.logprobs, "grammar": req.grammar, "truncate": req.truncate,
                "shift": req.shift,
            })
            while True:
                msg = await queue.get()
                op = msg["op"]
                if op == "piece":
                    yield Piece(msg["text"], msg.get("logprobs"))
                elif op == "done":
                    finished = True
                    yield Done(
                        reason=msg["reason"], prompt_tokens=msg["prompt_tokens"],
                        prompt_eval_count=msg["prompt_eval_count"],
                        prompt_eval_ns=msg["prompt_eval_ns"], eval_count=msg["eval_count"],
                        eval_ns=msg["eval_ns"], stop_sequence=msg.get("stop_sequence"),
                        truncated=int(msg.get("truncated", 0)),
                    )
                    return
                else:
                    finished = True
                    raise RunnerError(msg.get("message", "the model runner failed"),
                                      int(msg.get("status", 500)))
        finally:
            self._queues.pop(rid, None)
            if not finished and self.alive:
                with contextlib.suppress(Exception):
                    self._send({"op": "cancel", "id": rid})

    async def tokenize(self, text: str, add_special: bool = True,
                       parse_special: bool = True) -> list[int]:
        """The model's own tokens for `text`, as a prompt gets them by default."""
        tokens, _ = await self.tokenize_pieces(text, add_special, parse_special, pieces=False)
        return tokens

    async def tokenize_pieces(self, text: str, add_special: bool, parse_special: bool,
                              pieces: bool = True) -> tuple[list[int], list[str | list[int]]]:
        """Tokens and, if asked, each one's text (its bytes where they are not whole UTF-8)."""
        answer = await self._call({"op": "tokenize", "text": text, "add_special": add_special,
                                   "parse_special": parse_special, "pieces": pieces}, "tokens")
        return list(answer[-1]["tokens"]), list(answer[-1].get("pieces") or [])

    async def detokenize(self, tokens: list[int], special: bool = True) -> str:
        """Tokens back to text; an id outside the vocabulary is a RunnerError with status 400."""
        answer = await self._call({"op": "detokenize", "tokens": tokens, "special": special},
                                  "text")
        return str(answer[-1]["text"])

    async def embed(self, texts: list[str], truncate: bool, dimensions: int | None,
                    num_ctx: int | None = None) -> tuple[list[list[float]], int]:
        """The vectors come in parts of a few dozen (no one message grows with the batch)."""
        parts = await self._call({"op": "embed", "texts": texts, "truncate": truncate,
                                  "dimensions": dimensions, "num_ctx": num_ctx}, "embeddings")
        vectors = [vector for part in parts for vector in part["embeddings"]]
        return vectors, int(parts[-1]["prompt_tokens"])

    async def _call(self, request: dict[str, Any], answer: str) -> list[dict[str, Any]]:
        """One request and its answer, for the operations that do not stream: one message, or
        several of which all but the last say `more`. A caller that gives up cancels it."""
        rid = next(self._ids)
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._queues[rid] = queue
        finished = False
        try:
            self._send({**request, "id": rid})
            parts = []
            while True:
                msg = await queue.get()
                if msg["op"] != answer:
                    finished = True
                    raise RunnerError(msg.get("message", f"{request['op']} failed"),
                                      int(msg.get("status", 500)))
                parts.append(msg)
                if not msg.get("more"):
                    finished = True
                    return parts
        finally:
            self._queues.pop(rid, None)
            if not finished and self.alive:
                with contextlib.suppress(Exception):
                    self._send({"op": "cancel", "id": rid})

    def _send(self, msg: dict[str, Any]) -> None:
        if not self.alive:
            raise RunnerError("the model runner is not running")
        self._writer.write(protocol.encode([msg]))

    async def _read_loop(self) -> None:
        try:
            while line := await self._reader.readline():
                msg = json.loads(line)
                queue = self._queues.get(msg.get("id", -1))
                if queue is not None:
                    queue.put_nowait(msg)
        except (ConnectionError, ValueError):
            pass
        finally:
            self._dead = True
            self._closed.set()
            for queue in self._queues.values():
                queue.put_nowait({"op": "error", "message": "the model runner stopped unexpectedly"})

    async def stop(self) -> None:
        """Terminate the process (kill it after 5 s) and reap it."""
        self._dead = True
        self._closed.set()
        with contextlib.suppress(Exception):
            self._writer.close()
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.terminate()
            try:
                await asyncio.wait_for(self.proc.wait(), timeout=5)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    self.proc.kill()
                await self.proc.wait()
        self._task.cancel()
