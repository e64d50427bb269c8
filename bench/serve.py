#!/usr/bin/env python3
"""Serving benchmark: Roost against llama.cpp's own front ends, one model, one run.

Figures from different runs or machines are not comparable (core count, AVX flavour, other
load), so this script measures every engine side by side, on the very same GGUF file and the
very same prompt text, and prints ratios. Each server runs alone (started, measured, stopped)
so that no two engines compete for the cores.

Engines, in the order they run:
  roost              `roost serve`, Ollama API (/api/generate, /api/chat), NDJSON
  llama-cpp-python   `llama_cpp.Llama` in this process: the reference a Python engine can reach
  llama-server       llama.cpp's C++ server (--llama-server PATH), /completion, SSE
  llama-cpp-server   `python -m llama_cpp.server` (--llama-cpp-server-python PATH), /v1/completions

Every prompt is ChatML text sent raw (Roost gets `raw: true`), so all engines evaluate the same
tokens. Each request carries a unique id near the start of the prompt: no engine can answer
from a prompt cache, so TTFT always includes a real prompt evaluation.

HTTP uses only the standard library and httpx2. llama_cpp is imported only for the in-process
engine and a vocab-only tokenizer (token counts where an engine reports none).
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2 as httpx

MODEL = "qwen2.5-coder:0.5b"
DIGEST = "sha256-1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"
CTX_PER_SLOT = 4096
LABELS = {"roost": "Roost (HTTP)", "llama-cpp-python": "llama-cpp-python (in process)",
          "llama-server": "llama-server", "llama-cpp-server": "llama_cpp.server"}
SINGLE_TASK = ("Write a Python module implementing a thread-safe LRU cache with per-entry TTL "
               "expiry. Include type hints, docstrings and pytest unit tests.")
# One distinct task per concurrent client, all long-winded so that none stops early.
TASKS = [
    "Write a Python class for a binary search tree with insert, delete and in-order traversal.",
    "Write a C function that parses a CSV line into fields, handling quoted commas. Explain it.",
    "Write a JavaScript module for a debounced search box that calls a REST API, with comments.",
    "Write a Rust program that counts word frequencies in a text file and prints the top ten.",
    "Write a Go HTTP server with a /health endpoint and a JSON /items CRUD API in memory.",
    "Write a SQL schema for a library (books, members, loans) and five example queries.",
    "Write a Bash script that backs up a directory to a dated tar.gz and keeps the last seven.",
    "Write a Python asyncio crawler that fetches URLs with a concurrency limit and retries.",
]
CHAT_TURNS = [
    "Write a Python function that checks whether a string is a palindrome.",
    "Now make it ignore punctuation and case.",
    "Add type hints and a docstring.",
    "Write three pytest tests for it.",
    "Summarise what the function does in one sentence.",
]
_ids = itertools.count(1)
Engine = Callable[[str, int], "Sample"]  # (prompt, max_tokens) -> one timed request


def chatml(messages: list[dict[str, str]]) -> str:
    """The Qwen2.5 chat format by hand, so every engine gets identical text and tokens."""
    return "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n"
                   for m in messages) + "<|im_start|>assistant\n"


def fresh_prompt(task: str) -> str:
    """A unique fixed-width id early in the prompt defeats every engine's prefix cache (cold
    TTFT) while keeping the token count the same from one request to the next."""
    system = f"You are a helpful coding assistant. Request {next(_ids):05d}."
    return chatml([{"role": "system", "content": system}, {"role": "user", "content": task}])


@dataclass
class Sample:
    """One streamed request, timed on the client (perf_counter seconds)."""

    t_send: float
    t_first: float             # first non-empty text piece
    t_end: float               # last text piece
    tokens: int                # generated tokens: engine-reported, else the text re-tokenized
    engine_tps: float | None   # decode tok/s as the engine reports it (None: it reports none)

    @property
    def ttft(self) -> float:
        return self.t_first - self.t_send

    @property
    def latency(self) -> float:
        return self.t_end - self.t_send

    @property
    def client_tps(self) -> float:
        """Tokens after the first over the time after the first: decode speed as users see it."""
        span = self.t_end - self.t_first
        return (self.tokens - 1) / span if span > 0 and self.tokens > 1 else 0.0


def timed(pieces: Iterator[str], t_send: float) -> tuple[str, float, float]:
    """Drain a stream of text pieces: (text, time of first non-empty piece, time of last)."""
    parts: list[str] = []
    first = last = 0.0
    for piece in pieces:
        if piece:
            last = time.perf_counter()
            first = first or last
            parts.append(piece)
    if not parts:
        raise RuntimeError("the engine streamed no text")
    return "".join(parts), first, last


def lines(url: str, body: dict[str, Any]) -> Iterator[str]:
    """POST and yield the response's lines. A client per request keeps threads independent
    and costs every engine the same loopback connect."""
    with httpx.Client(timeout=httpx.Timeout(900.0, connect=10.0)) as client, \
            client.stream("POST", url, json=body) as resp:
        if resp.status_code != 200:
            raise RuntimeError(f"{url}: HTTP {resp.status_code}: {resp.read()[:300]!r}")
        yield from resp.iter_lines()


def sse(url: str, body: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Server-sent events: `data: {json}` lines; comments (pings) and [DONE] are skipped."""
    for line in lines(url, body):
        if line.startswith("data:") and line[5:].strip() not in ("", "[DONE]"):
            yield json.loads(line[5:])


def ndjson(url: str, body: dict[str, Any], final: dict[str, Any],
           text: Callable[[dict[str, Any]], str]) -> Iterator[str]:
    """Ollama's NDJSON stream: yields text pieces, copies the done line into `final`."""
    for line in filter(str.strip, lines(url, body)):
        obj = json.loads(line)
        if "error" in obj:
            raise RuntimeError(f"roost: {obj['error']}")
        if obj.get("done"):
            final.update(obj)
        yield text(obj)


# -- engines -------------------------------------------------------------------------------

def roost_engine(base: str) -> Engine:
    def run(prompt: str, max_tokens: int) -> Sample:
        final: dict[str, Any] = {}
        body = {"model": MODEL, "prompt": prompt, "raw": True, "stream": True,
                "options": {"temperature": 0, "num_predict": max_tokens, "seed": 1}}
        t0 = time.perf_counter()
        _, first, last = timed(ndjson(f"{base}/api/generate", body, final,
                                      lambda o: o.get("response", "")), t0)
        n, ns = final["eval_count"], final["eval_duration"]
        return Sample(t0, first, last, n, n / ns * 1e9 if ns else None)
    return run


def llama_server_engine(base: str) -> Engine:
    def run(prompt: str, max_tokens: int) -> Sample:
        timings: dict[str, Any] = {}
        body = {"prompt": prompt, "n_predict": max_tokens, "temperature": 0, "seed": 1,
                "stream": True}

        def pieces() -> Iterator[str]:
            for obj in sse(f"{base}/completion", body):
                timings.update(obj.get("timings") or {})  # only the last event has them
                yield obj.get("content", "")

        t0 = time.perf_counter()
        _, first, last = timed(pieces(), t0)
        return Sample(t0, first, last, int(timings["predicted_n"]),
                      timings.get("predicted_per_second"))
    return run


def openai_engine(base: str, count: Callable[[str], int]) -> Engine:
    """/v1/completions of llama_cpp.server: its stream carries no token counts."""
    def run(prompt: str, max_tokens: int) -> Sample:
        body = {"prompt": prompt, "max_tokens": max_tokens, "temperature": 0, "seed": 1,
                "stream": True}
        pieces = (c["choices"][0].get("text", "") for c in sse(f"{base}/v1/completions", body)
                  if c.get("choices"))
        t0 = time.perf_counter()
        text, first, last = timed(pieces, t0)
        return Sample(t0, first, last, count(text), None)
    return run


@contextlib.contextmanager
def inprocess_engine(model: Path, threads: int) -> Iterator[Engine]:
    """llama_cpp.Llama in this process; llama.cpp's perf counters give the engine figure."""
    import llama_cpp
    from llama_cpp import llama_cpp as ll

    llm = llama_cpp.Llama(str(model), n_ctx=CTX_PER_SLOT, n_threads=threads,
                          n_threads_batch=threads, verbose=False)

    def run(prompt: str, max_tokens: int) -> Sample:
        ll.llama_perf_context_reset(llm._ctx.ctx)
        stream: Any = llm.create_completion(prompt, max_tokens=max_tokens, temperature=0,
                                            seed=1, stream=True)
        t0 = time.perf_counter()
        _, first, last = timed((c["choices"][0]["text"] for c in stream), t0)
        perf = ll.llama_perf_context(llm._ctx.ctx)
        # The last sampled token is never decoded, so generated = single-token decodes + 1.
        tps = perf.n_eval / perf.t_eval_ms * 1e3 if perf.t_eval_ms > 0 else None
        return Sample(t0, first, last, perf.n_eval + 1, tps)

    try:
        yield run
    finally:
        llm.close()


# -- servers ---------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def process(name: str, argv: list[str], ready_url: str, logdir: Path,
            env: dict[str, str] | None = None, timeout: float = 300.0) -> Iterator[None]:
    """Run a server in its own process group until `ready_url` answers 200; on exit (error
    and Ctrl+C included) terminate the whole group, which takes Roost's runners with it."""
    log_path = logdir / f"{name}.log"
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env={**os.environ, **(env or {})},
                                start_new_session=True)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited ({proc.returncode}); log: {log_path}\n"
                                   + log_path.read_text(errors="replace")[-2000:])
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(ready_url, timeout=2.0).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} not ready after {timeout:.0f} s; log: {log_path}")
            time.sleep(0.25)
        yield
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        time.sleep(1.0)  # let the group's children go before the next engine starts


@contextlib.contextmanager
def serve(name: str, args: argparse.Namespace, slots: int) -> Iterator[str]:
    """Start engine `name` with `slots` parallel sequences; yield its base URL.

    - roost: ROOST_NUM_PARALLEL=slots, a long keep_alive; pulls the model if the home lacks it.
    - llama-server: -np slots, -c CTX_PER_SLOT*slots, and -kvu (one KV buffer shared by the
      slots), which is what its automatic -np gives, kept when -np is set explicitly.
    - llama_cpp.server: one context, requests one at a time; --interrupt_requests False, since
      its default aborts the running stream whenever a new request arrives.
    """
    port, t, model = free_port(), str(args.threads), str(args.model)
    base = f"http://127.0.0.1:{port}"
    net = ["--host", "127.0.0.1", "--port", str(port)]
    env: dict[str, str] = {}
    if name == "roost":
        argv, ready = [args.roost, "serve"], "/"
        env = {"ROOST_HOME": str(args.home), "ROOST_HOST": f"127.0.0.1:{port}",
               "ROOST_NUM_PARALLEL": str(slots), "ROOST_NUM_THREADS": t, "ROOST_KEEP_ALIVE": "1h",
               "ROOST_CPU_KERNELS": getattr(args, "cpu_kernels", None) or "auto"}
    elif name == "llama-server":
        argv, ready = [args.llama_server, "-m", model, "-c", str(CTX_PER_SLOT * slots), "-np",
                       str(slots), "-kvu", "-t", t, "-tb", t, "--no-webui", *net], "/health"
    else:
        argv, ready = [args.llama_cpp_server_python, "-m", "llama_cpp.server", "--model", model,
                       "--n_ctx", str(CTX_PER_SLOT), "--n_threads", t, "--n_threads_batch", t,
                       "--interrupt_requests", "False", *net], "/v1/models"
    with process(f"{name}-np{slots}", argv, base + ready, args.logdir, env):
        if name == "roost" and not args.model.exists():
            print(f"  pulling {MODEL} into {args.home} ...", flush=True)
            r = httpx.post(f"{base}/api/pull", json={"model": MODEL, "stream": False},
                           timeout=900.0)
            if r.status_code != 200:
                raise RuntimeError(f"roost pull failed: {r.text[:300]}")
        yield base


# -- measurements -------------------------------------------------------------------------

def pct(values: list[float], q: float) -> float:
    """Percentile with linear interpolation (small samples: p95 of 4 sits near the max)."""
    v = sorted(values)
    k = (len(v) - 1) * q
    lo = int(k)
    return v[lo] + (v[min(lo + 1, len(v) - 1)] - v[lo]) * (k - lo)


def single_stream(run: Engine, args: argparse.Namespace, count: Callable[[str], int]) -> dict:
    """Warm-up (the first request may load the model), then the median of `runs` requests."""
    run(fresh_prompt(SINGLE_TASK), args.tokens)
    prompts = [fresh_prompt(SINGLE_TASK) for _ in range(args.runs)]
    samples = [run(p, args.tokens) for p in prompts]
    engine = [s.engine_tps for s in samples if s.engine_tps]
    return {"prompt_tokens": count(prompts[0]),
            "tokens": statistics.median(s.tokens for s in samples),
            "ttft_ms": statistics.median(s.ttft for s in samples) * 1e3,
            "engine_tps": statistics.median(engine) if engine else None,
            "client_tps": statistics.median(s.client_tps for s in samples)}


def _client(run: Engine, prompt: str, tokens: int, barrier: threading.Barrier) -> Sample:
    barrier.wait()  # all clients send together
    return run(prompt, tokens)


def concurrent(run: Engine, clients: int, args: argparse.Namespace, slots: str) -> dict:
    """`clients` threads start together, each streaming its own prompt; aggregate tok/s is
    all generated tokens over the wall time from the first send to the last token."""
    aggregates: list[float] = []
    samples: list[Sample] = []
    run(fresh_prompt(TASKS[0]), 8)  # warm-up: loads the model if it is not yet
    for _ in range(args.runs):
        barrier = threading.Barrier(clients)
        with ThreadPoolExecutor(clients) as pool:
            futures = [pool.submit(_client, run, fresh_prompt(TASKS[i % len(TASKS)]),
                                   args.tokens, barrier) for i in range(clients)]
            batch = [f.result() for f in futures]  # the first failure raises here
        wall = max(s.t_end for s in batch) - min(s.t_send for s in batch)
        aggregates.append(sum(s.tokens for s in batch) / wall)
        samples += batch
    lat = [s.latency for s in samples]
    return {"clients": clients, "slots": slots, "aggregate_tps": statistics.median(aggregates),
            "per_request_tps": statistics.median(s.client_tps for s in samples),
            "p50_ttft_ms": pct([s.ttft for s in samples], 0.5) * 1e3,
            "p50_latency_s": pct(lat, 0.5), "p95_latency_s": pct(lat, 0.95)}


def evaluated_so_far(base: str) -> int:
    """Prompt tokens Roost's runners evaluated (a cached prefix left out), from /metrics:
    prompt_eval_count counts the whole prompt, as Ollama's does."""
    text = httpx.get(f"{base}/metrics", timeout=30).text
    return sum(int(float(line.rsplit(" ", 1)[1])) for line in text.splitlines()
               if line.startswith("roost_prompt_eval_tokens_total{"))


def chat_turns(base: str, args: argparse.Namespace, count: Callable[[str], int]) -> list[dict]:
    """A 5-turn chat on /api/chat: with prefix reuse, turn N evaluates only its new tokens.
    The total is the same conversation rendered here in ChatML and counted by the tokenizer."""
    messages = [{"role": "system", "content": f"You are a helpful assistant. Chat {next(_ids)}."}]
    rows = []
    for turn, text in enumerate(CHAT_TURNS, 1):
        messages.append({"role": "user", "content": text})
        final: dict[str, Any] = {}
        body = {"model": MODEL, "messages": messages, "stream": True,
                "options": {"temperature": 0, "num_predict": min(args.tokens, 96), "seed": 1}}
        before = evaluated_so_far(base)
        t0 = time.perf_counter()
        reply, first, _ = timed(ndjson(f"{base}/api/chat", body, final,
                                       lambda o: (o.get("message") or {}).get("content", "")), t0)
        rows.append({"turn": turn, "prompt_tokens": count(chatml(messages)),
                     "evaluated": evaluated_so_far(base) - before,
                     "prompt_eval_ms": final.get("prompt_eval_duration", 0) / 1e6,
                     "ttft_ms": (first - t0) * 1e3, "eval_count": final.get("eval_count")})
        messages.append({"role": "assistant", "content": reply})
    return rows


def plan(base_slots: int, clients: list[int]) -> list[tuple[int, list[int]]]:
    """Servers to start, as (slots, client counts measured on it): the base size, then one per
    client count that needs more slots (-np 8 for 8 clients)."""
    sizes = sorted({base_slots, *(max(base_slots, c) for c in clients)})
    return [(n, [c for c in clients if max(base_slots, c) == n]) for n in sizes]


def measure_all(args: argparse.Namespace) -> dict[str, Any]:
    """Each engine alone, in turn. An engine that fails is reported and the run goes on."""
    res: dict[str, Any] = {"single": {}, "concurrent": [], "chat": [], "skipped": {},
                           "cpu_kernels": {}}
    vocab: list[Any] = []

    def count(text: str) -> int:
        """Token count of text, from a vocab-only load of the same GGUF (loaded on first use)."""
        if not vocab:
            import llama_cpp
            saved = os.dup(2)  # silence a spurious context warning llama.cpp prints on fd 2
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, 2)
            os.close(null)
            try:
                vocab.append(llama_cpp.Llama(str(args.model), vocab_only=True, verbose=False))
            finally:
                os.dup2(saved, 2)
                os.close(saved)
        return len(vocab[0].tokenize(text.encode(), add_bos=False, special=True))

    def step(title: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {title}", flush=True)

    given = {"llama-server": args.llama_server,
             "llama-cpp-server": args.llama_cpp_server_python}
    factories: dict[str, Callable[[str], Engine]] = {
        "roost": roost_engine, "llama-server": llama_server_engine,
        "llama-cpp-server": lambda base: openai_engine(base, count)}
    for name in (n for n in LABELS if n in args.engines):
        if name in given and not (given[name] and Path(given[name]).is_file()):
            flag = "--" + ("llama-server" if name == "llama-server" else "llama-cpp-server-python")
            res["skipped"][name] = f"not given ({flag} PATH)"
            continue
        if name != "roost" and not args.model.exists():
            res["skipped"][name] = f"no model file {args.model} (run the roost engine once)"
            continue
        try:
            if name == "llama-cpp-python":
                step(f"{LABELS[name]}: single stream")
                with inprocess_engine(args.model, args.threads) as run:
                    res["single"][name] = single_stream(run, args, count)
                continue
            # llama_cpp.server serves one request at a time: one server takes every client count.
            base_slots = {"roost": args.roost_parallel, "llama-server": 4}.get(
                name, max([1, *args.clients]))
            for i, (slots, clients) in enumerate(plan(base_slots, args.clients)):
                label = "serial" if name == "llama-cpp-server" else f"np={slots}"
                with serve(name, args, slots) as base:
                    run = factories[name](base)
                    if i == 0:
                        step(f"{LABELS[name]} ({label}): single stream")
                        res["single"][name] = single_stream(run, args, count)
                    if i == 0 and name == "roost":
                        step(f"{LABELS[name]}: 5-turn chat")
                        res["chat"] = chat_turns(base, args, count)
                    for c in clients:
                        step(f"{LABELS[name]} ({label}): {c} concurrent clients")
                        res["concurrent"].append(
                            {"engine": name, **concurrent(run, c, args, label)})
        except (RuntimeError, OSError, httpx.HTTPError, KeyError, ValueError) as exc:
            print(f"  {name} failed: {exc}", file=sys.stderr, flush=True)
            res["skipped"][name] = f"failed: {str(exc)[:300]}"
    for mode in args.roost_cpu_kernels:
        step(f"{LABELS['roost']} with ROOST_CPU_KERNELS={mode}: single stream")
        try:
            with serve("roost", argparse.Namespace(**{**vars(args), "cpu_kernels": mode}), 1) as base:
                res["cpu_kernels"][mode] = single_stream(roost_engine(base), args, count)
        except (RuntimeError, OSError, httpx.HTTPError, KeyError, ValueError) as exc:
            res["skipped"][f"roost[{mode}]"] = f"failed: {str(exc)[:300]}"
    return res


# -- report ----------------------------------------------------------------------------------

def fmt(v: Any, spec: str = ".1f") -> str:
    return "-" if v is None else format(v, spec)


def table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]

    def line(cells: list[str]) -> str:
        return "  ".join(c.rjust(w) if i else c.ljust(w)
                         for i, (c, w) in enumerate(zip(cells, widths, strict=True)))
    return "\n".join([line(headers), line(["-" * w for w in widths]), *map(line, rows)])


def report(res: dict[str, Any], args: argparse.Namespace) -> str:
    """Tables plus Roost's ratios to the baseline (llama-server, else llama-cpp-python)."""
    out = [f"\nmodel {MODEL} ({DIGEST[:19]}...), {args.threads} threads, {args.tokens} tokens "
           f"per request, median of {args.runs}"]
    if res["single"]:
        out += ["\nSingle stream (TTFT: send to first text; decode tok/s: as the engine reports "
                "it, and on the client after the first token)",
                table(["engine", "prompt tok", "gen tok", "TTFT ms", "decode tok/s (engine)",
                       "decode tok/s (client)"],
                      [[LABELS[e], str(r["prompt_tokens"]), fmt(r["tokens"], ".0f"),
                        fmt(r["ttft_ms"], ".0f"), fmt(r["engine_tps"]), fmt(r["client_tps"])]
                       for e, r in res["single"].items()])]
    if res["concurrent"]:
        out += ["\nConcurrent clients (aggregate = all generated tokens / wall time)",
                table(["engine", "clients", "slots", "aggregate tok/s", "per-request tok/s",
                       "p50 TTFT ms", "p50 latency s", "p95 latency s"],
                      [[LABELS[r["engine"]], str(r["clients"]), r["slots"],
                        fmt(r["aggregate_tps"]), fmt(r["per_request_tps"]),
                        fmt(r["p50_ttft_ms"], ".0f"), fmt(r["p50_latency_s"], ".2f"),
                        fmt(r["p95_latency_s"], ".2f")] for r in res["concurrent"]])]
    if res["chat"]:
        out += ["\nRoost 5-turn chat (/api/chat): prompt tokens evaluated per turn vs in total",
                table(["turn", "prompt tokens (total)", "evaluated (/metrics)", "prompt eval ms",
                       "TTFT ms"],
                      [[str(r["turn"]), str(r["prompt_tokens"]), fmt(r["evaluated"], "d"),
                        fmt(r["prompt_eval_ms"], ".0f"), fmt(r["ttft_ms"], ".0f")]
                       for r in res["chat"]])]
    base = next((e for e in ("llama-server", "llama-cpp-python") if e in res["single"]), None)
    if base and "roost" in res["single"]:
        r, b = res["single"]["roost"], res["single"][base]
        out.append(f"\nRoost / {LABELS[base]}:")
        for key, what in (("engine_tps", "decode tok/s (engine)"),
                          ("client_tps", "decode tok/s (client)"),
                          ("ttft_ms", "TTFT (lower is better)")):
            if r[key] and b[key]:
                out.append(f"  single stream {what}: {r[key] / b[key]:.2f}x")
        conc = {(x["engine"], x["clients"]): x for x in res["concurrent"]}
        for c in args.clients:
            if ("roost", c) in conc and (base, c) in conc:
                x, y = conc[("roost", c)], conc[(base, c)]
                out.append(f"  {c} clients: aggregate tok/s "
                           f"{x['aggregate_tps'] / y['aggregate_tps']:.2f}x, p50 latency "
                           f"{x['p50_latency_s'] / y['p50_latency_s']:.2f}x (lower is better)")
    if res["cpu_kernels"]:
        first = next(iter(res["cpu_kernels"].values()))
        out += ["\nRoost single stream by CPU kernels (what the AMX fallback costs; ratio to the first)",
                table(["ROOST_CPU_KERNELS", "TTFT ms", "decode tok/s (engine)", "ratio"],
                      [[mode, fmt(r["ttft_ms"], ".0f"), fmt(r["engine_tps"]),
                        fmt(r["engine_tps"] / first["engine_tps"] if first["engine_tps"] else None, ".2f")]
                       for mode, r in res["cpu_kernels"].items()])]
    out += [f"\nskipped {LABELS.get(e, e)}: {why}" for e, why in res["skipped"].items()]
    return "\n".join(out)


def _cpu_name() -> str:
    with contextlib.suppress(OSError, StopIteration):
        info = Path("/proc/cpuinfo").read_text().splitlines()
        return next(x for x in info if x.startswith("model name")).split(":", 1)[1].strip()
    return platform.processor()


def main() -> int:
    ap = argparse.ArgumentParser(
        description="Benchmark Roost's serving speed against llama.cpp's front ends on the same "
                    "model file and prompts: single-stream decode and TTFT, concurrent clients, "
                    "and prefix reuse across a chat. Engines run one after another, alone.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--llama-server", metavar="PATH", help="llama.cpp's llama-server binary")
    ap.add_argument("--llama-cpp-server-python", metavar="PATH",
                    help="a python with llama-cpp-python[server] installed")
    ap.add_argument("--roost", default=str(Path(sys.executable).with_name("roost")),
                    help="the roost command")
    ap.add_argument("--roost-home", type=Path,
                    help="ROOST_HOME to use, keeping the pulled model between runs "
                         "(None: a temporary one)")
    ap.add_argument("--engines", default=",".join(LABELS), help="comma-separated subset to run")
    ap.add_argument("--tokens", type=int, default=128, help="tokens generated per request")
    ap.add_argument("--runs", type=int, default=3, help="measured runs per figure (median)")
    ap.add_argument("--clients", default="4,8", help="concurrent client counts")
    ap.add_argument("--roost-cpu-kernels", type=lambda v: [m for m in v.split(",") if m], default=[],
                    help="also measure Roost's single stream with each ROOST_CPU_KERNELS mode "
                         "listed (e.g. all,no-amx,none)")
    ap.add_argument("--roost-parallel", type=int, default=4,
                    help="ROOST_NUM_PARALLEL (raised to the client count where that is larger)")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                    help="CPU threads for every engine")
    ap.add_argument("--quick", action="store_true",
                    help="smoke test: 32 tokens, 1 run, 4 clients only")
    ap.add_argument("--json", type=Path, metavar="PATH", help="also write the results as JSON")
    args = ap.parse_args()
    args.engines = {e.strip() for e in args.engines.split(",") if e.strip()}
    if unknown := args.engines - set(LABELS):
        ap.error(f"unknown engines: {', '.join(sorted(unknown))}")
    args.clients = [int(c) for c in args.clients.split(",") if c.strip()]
    if args.quick:
        args.tokens, args.runs, args.clients = 32, 1, [4]

    # SIGTERM (a CI timeout, say) unwinds like Ctrl+C, so every server still gets stopped.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    started = time.monotonic()
    args.logdir = Path(tempfile.mkdtemp(prefix="roost-bench-logs-"))  # kept for post-mortems
    with tempfile.TemporaryDirectory(prefix="roost-bench-") as tmp:
        args.home = args.roost_home or Path(tmp) / "home"
        args.model = args.home / "blobs" / DIGEST
        try:
            res = measure_all(args)
        except KeyboardInterrupt:
            print(f"\ninterrupted; servers stopped; logs in {args.logdir}", file=sys.stderr)
            return 130
    elapsed = time.monotonic() - started
    print(report(res, args))
    print(f"\n(benchmark took {elapsed:.0f} s; server logs in {args.logdir})")
    if args.json:
        meta = {"model": MODEL, "digest": DIGEST, "threads": args.threads, "tokens": args.tokens,
                "runs": args.runs, "clients": args.clients, "cpu": _cpu_name(),
                "cores": os.cpu_count(), "python": platform.python_version(),
                "elapsed_s": round(elapsed, 1)}
        args.json.write_text(json.dumps({"meta": meta, **res}, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 1 if any(v.startswith("failed") for v in res["skipped"].values()) else 0


if __name__ == "__main__":
    sys.exit(main())
