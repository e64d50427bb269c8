"""The soak's clients: streaming chats in Ollama's and OpenAI's dialects, some cut off mid-stream.

Four kinds, four threads each: raw httpx2 on /api/chat, the `ollama` package, raw httpx2 on
/v1/chat/completions (server-sent events), the `openai` package. Every request streams; one in
ten is planned to be cancelled by closing its response after a random number of chunks. Any
non-200, error line or frame, missing final chunk or exception on a request that was not
cancelled is a failure, recorded with its kind and message (the test asserts there are none).
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from typing import Any, cast

import httpx2 as httpx
import ollama
import openai

MODEL = "qwen2.5-coder:0.5b"
KINDS = ("ollama-raw", "ollama-client", "openai-raw", "openai-client")
CANCEL_SHARE = 0.10
READ_TIMEOUT = 300.0  # a queued request may wait minutes behind 12 others on a busy 2-core machine
PROMPTS = (
    "Write a Python function that reverses a string.",
    "What is a hash map? Answer in two sentences.",
    "Explain recursion to a child.",
    "Write a haiku about the sea.",
    "List three prime numbers and say why they are prime.",
    "How do I read a file line by line in Python?",
    "What does HTTP status 404 mean?",
    "Name four sorting algorithms.",
    "Write a SQL query that counts rows in a table named users.",
    "Why is the sky blue? One paragraph.",
    "Give a JavaScript example of an arrow function.",
    "What is the difference between a list and a tuple in Python?",
)


class SoakFailure(Exception):
    """A request that was not cancelled and did not end with a whole, error-free answer."""


@dataclass
class Tally:
    """What all clients did, under one lock."""

    done: int = 0
    cancelled: int = 0
    tokens: int = 0
    empty: int = 0  # finished with no text at all (counted, not a failure)
    by_kind: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    failures: list[str] = field(default_factory=list)
    log: list[dict[str, Any]] = field(default_factory=list)  # one entry per request
    last_chunk: float = field(default_factory=time.monotonic)  # any client's latest chunk
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, watch: Watch, result: Result) -> None:
        with self.lock:
            self.by_kind[watch.kind] += 1
            self.tokens += result.tokens
            if result.cancelled:
                self.cancelled += 1
            else:
                self.done += 1
                self.empty += not result.text
            self.log.append(watch.entry("cancelled" if result.cancelled else "done", result.tokens))

    def fail(self, watch: Watch, message: str) -> None:
        with self.lock:
            self.by_kind[watch.kind] += 1
            self.failures.append(f"{watch.kind}: {message}"[:500])
            self.log.append(watch.entry("failed", 0))


@dataclass
class Watch:
    """One request's timing: when it was sent, when its first chunk came, when it ended."""

    kind: str
    plan: Plan
    tally: Tally
    started: float = field(default_factory=time.monotonic)
    first: float | None = None

    def chunk(self) -> None:
        now = time.monotonic()
        self.first = self.first or now
        self.tally.last_chunk = now  # a float store: atomic enough for a liveness check

    def entry(self, outcome: str, tokens: int) -> dict[str, Any]:
        now = time.monotonic()
        return {"kind": self.kind, "outcome": outcome, "tokens": tokens,
                "max_tokens": self.plan.max_tokens, "start": self.started,
                "first_s": round(self.first - self.started, 2) if self.first else None,
                "total_s": round(now - self.started, 2)}


@dataclass
class Result:
    tokens: int
    cancelled: bool
    text: str = ""


@dataclass
class Plan:
    """One request: its messages, length, temperature, and after how many chunks to hang up."""

    messages: list[dict[str, str]]
    max_tokens: int
    temperature: float
    cancel_after: int | None  # None: read to the end

    @classmethod
    def draw(cls, rng: random.Random) -> Plan:
        messages = [{"role": "user", "content": rng.choice(PROMPTS)}]
        if rng.random() < 0.25:  # a second turn, so some prompts share a prefix with earlier ones
            messages += [{"role": "assistant", "content": "Sure."},
                         {"role": "user", "content": rng.choice(PROMPTS)}]
        cancel = rng.randint(1, 8) if rng.random() < CANCEL_SHARE else None
        return cls(messages, rng.randint(16, 64), rng.choice((0.0, 0.5, 0.8)), cancel)


def _stop_at(plan: Plan, chunks: int) -> bool:
    return plan.cancel_after is not None and chunks >= plan.cancel_after


def _ollama_body(plan: Plan) -> dict[str, Any]:
    return {"model": MODEL, "messages": plan.messages, "stream": True,
            "options": {"num_predict": plan.max_tokens, "temperature": plan.temperature}}


def _openai_body(plan: Plan) -> dict[str, Any]:
    return {"model": MODEL, "messages": plan.messages, "stream": True, "max_tokens": plan.max_tokens,
            "temperature": plan.temperature, "stream_options": {"include_usage": True}}


def ollama_raw(c: httpx.Client, plan: Plan, watch: Watch) -> Result:
    text, chunks, final = "", 0, None
    with c.stream("POST", "/api/chat", json=_ollama_body(plan)) as r:
        if r.status_code != 200:
            raise SoakFailure(f"HTTP {r.status_code}: {r.read().decode(errors='replace')}")
        for line in r.iter_lines():
            if not line:
                continue
            obj = json.loads(line)
            if "error" in obj or final is not None:
                raise SoakFailure(f"error line, or a line after the last: {obj}")
            if obj.get("done"):
                final = obj
                continue
            text += obj["message"]["content"]
            chunks += 1
            watch.chunk()
            if _stop_at(plan, chunks):
                return Result(chunks, True, text)  # leaving the block closes the response
    if final is None or final.get("done_reason") not in ("stop", "length"):
        raise SoakFailure(f"the stream ended without a done line with a done_reason: {final}")
    return Result(int(final["eval_count"]), False, text)


def ollama_client(c: ollama.Client, plan: Plan, watch: Watch) -> Result:
    text, chunks, final = "", 0, None
    stream = cast(Generator[ollama.ChatResponse, None, None], c.chat(
        model=MODEL, messages=plan.messages, stream=True,
        options={"num_predict": plan.max_tokens, "temperature": plan.temperature}))
    try:
        for part in stream:  # the client raises ResponseError on an error line
            if part.done:
                final = part
                continue
            text += part.message.content or ""
            chunks += 1
            watch.chunk()
            if _stop_at(plan, chunks):
                return Result(chunks, True, text)
    finally:
        stream.close()  # leaves the client's `with stream(...)`, closing the response
    if final is None or final.done_reason not in ("stop", "length"):
        raise SoakFailure(f"the stream ended without a done part with a done_reason: {final}")
    return Result(int(final.eval_count or 0), False, text)


def openai_raw(c: httpx.Client, plan: Plan, watch: Watch) -> Result:
    text, chunks, finish, usage, ended = "", 0, None, None, False
    with c.stream("POST", "/v1/chat/completions", json=_openai_body(plan)) as r:
        if r.status_code != 200:
            raise SoakFailure(f"HTTP {r.status_code}: {r.read().decode(errors='replace')}")
        for line in r.iter_lines():
            if not line.startswith("data: "):
                continue
            data = line[len("data: "):]
            if ended:
                raise SoakFailure(f"a frame after [DONE]: {data}")
            if data == "[DONE]":
                ended = True
                continue
            obj = json.loads(data)
            if "error" in obj:
                raise SoakFailure(f"error frame: {obj['error']}")
            usage = obj.get("usage") or usage
            for choice in obj["choices"]:
                finish = choice["finish_reason"] or finish
                text += choice["delta"].get("content") or ""
            chunks += 1
            watch.chunk()
            if _stop_at(plan, chunks):
                return Result(chunks, True, text)
    if not ended or finish not in ("stop", "length") or usage is None:
        raise SoakFailure(f"ended={ended} (data: [DONE]), finish_reason={finish!r}, usage={usage!r}")
    return Result(int(usage["completion_tokens"]), False, text)


def openai_client(c: openai.OpenAI, plan: Plan, watch: Watch) -> Result:
    text, chunks, finish, usage = "", 0, None, None
    stream = c.chat.completions.create(
        model=MODEL, messages=cast(Any, plan.messages), stream=True,
        max_tokens=plan.max_tokens, temperature=plan.temperature,
        stream_options={"include_usage": True})
    try:
        for chunk in stream:  # the client raises APIError on an error frame
            usage = chunk.usage or usage
            for choice in chunk.choices:
                finish = choice.finish_reason or finish
                text += choice.delta.content or ""
            chunks += 1
            watch.chunk()
            if _stop_at(plan, chunks):
                return Result(chunks, True, text)
    finally:
        stream.close()
    if finish not in ("stop", "length") or usage is None:
        raise SoakFailure(f"stream ended after finish_reason={finish!r}, usage={usage!r}")
    return Result(usage.completion_tokens, False, text)


Send = Callable[[Plan, "Watch"], Result]


def _session(kind: str, url: str) -> tuple[Send, Callable[[], None]]:
    """One kept-alive connection pool per client thread, as a real client holds one."""
    timeout = httpx.Timeout(READ_TIMEOUT, connect=10.0)
    if kind == "ollama-client":
        oc = ollama.Client(host=url, timeout=READ_TIMEOUT)
        return (lambda p, w: ollama_client(oc, p, w)), oc.close
    if kind == "openai-client":
        ai = openai.OpenAI(base_url=f"{url}/v1", api_key="soak", max_retries=0, timeout=READ_TIMEOUT)
        return (lambda p, w: openai_client(ai, p, w)), ai.close
    hc = httpx.Client(base_url=url, timeout=timeout)
    call = ollama_raw if kind == "ollama-raw" else openai_raw
    return (lambda p, w: call(hc, p, w)), hc.close


def plans(seed: int, until: float, most: int) -> Iterator[Plan]:
    """Requests until the deadline passes or `most` have been drawn: bounded in time and count."""
    rng = random.Random(seed)
    for _ in range(most):
        if time.monotonic() >= until:
            return
        yield Plan.draw(rng)


def client_loop(kind: str, url: str, seed: int, until: float, most: int, tally: Tally) -> None:
    """One soak client: request after request of its kind until the deadline."""
    send, close = _session(kind, url)
    try:
        for plan in plans(seed, until, most):
            watch = Watch(kind, plan, tally)
            try:
                result = send(plan, watch)
            except Exception as exc:  # any exception on a request is a failure, named in the tally
                tally.fail(watch, f"{type(exc).__name__}: {exc}")
                continue
            tally.record(watch, result)
    finally:
        close()


def start_clients(url: str, count: int, until: float, most_each: int, tally: Tally) -> list[threading.Thread]:
    threads = [threading.Thread(target=client_loop, name=f"soak-{i}-{KINDS[i % len(KINDS)]}",
                                args=(KINDS[i % len(KINDS)], url, 1000 + i, until, most_each, tally),
                                daemon=True)
               for i in range(count)]
    for t in threads:
        t.start()
    return threads
