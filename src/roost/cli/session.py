"""One conversation with a model, as `roost run` and its shell hold it.

The session keeps the messages and what the user has set (options, system prompt, format,
think, output style) and sends each turn through the same typed client a script would use.
A turn that is interrupted leaves nothing behind: the question is taken back.
"""

from __future__ import annotations

import contextlib
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from roost.cli.answer import AnswerPrinter
from roost.cli.render import spinner, wrap_width

if TYPE_CHECKING:
    from roost.api.client import Client


@dataclass
class Settings:
    options: dict[str, Any] = field(default_factory=dict)
    system: str | None = None
    format: Any = None
    think: bool | str | None = None
    hide_thinking: bool = False
    keepalive: str | None = None
    verbose: bool = False
    wordwrap: bool = True
    history: bool = True


class Session:
    def __init__(self, client: Client, model: str, settings: Settings | None = None) -> None:
        self.client = client
        self.model = model
        self.settings = settings or Settings()
        self.messages: list[dict[str, Any]] = []
        self.save = False  # keep each turn in a thread on the server
        self.thread_id: str | None = None

    def resume(self, thread_id: str) -> None:
        """Continue a saved thread: its messages, oldest first, are the conversation so far,
        less its interrupted turns, which the thread keeps on record but the model never sees."""
        self.client.thread(thread_id)  # an unknown id is the user's error, said at once
        self.thread_id, self.save = thread_id, True
        self.messages = _completed_turns(self.client.messages(thread_id))

    def _store(self, question: str, answer: str, complete: bool) -> None:
        if not self.save:
            return
        if self.thread_id is None:
            title = " ".join(question.split())[:60]
            self.thread_id = self.client.create_thread(title, self.model)["id"]
        self.client.add_message(self.thread_id, "user", question)
        # Even an empty answer is stored when cut off: its "incomplete" mark is what tells
        # resume() to leave the question out.
        status = "completed" if complete else "incomplete"
        self.client.add_message(self.thread_id, "assistant", answer, status)

    def load(self) -> None:
        """Load the model before the first prompt, with a spinner on a terminal."""
        with spinner("Loading the model"):
            self.client.load(self.model, self.settings.keepalive)

    def request_messages(self) -> list[dict[str, Any]]:
        system = self.settings.system
        return ([{"role": "system", "content": system}] if system else []) + self.messages

    def ask(self, text: str) -> dict[str, Any]:
        """Send one user turn, print the answer as it streams; return the final chunk."""
        self.messages.append({"role": "user", "content": text})
        reply: dict[str, Any] = {"role": "assistant", "content": ""}
        try:
            final = self.stream(reply)
        except BaseException:
            self.messages.pop()  # the unanswered question
            with contextlib.suppress(Exception):  # what was said is kept, marked incomplete
                self._store(text, reply["content"], complete=False)
            raise
        self.messages.append(reply)
        self._store(text, reply["content"], complete=True)
        return final

    def stream(self, reply: dict[str, Any], tools: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        """The answer to the conversation so far, printed as it streams and gathered into
        `reply` (in place, so an interrupted answer keeps what came); the final chunk."""
        s = self.settings
        printer = AnswerPrinter(sys.stdout, wrap_width(not s.wordwrap), s.hide_thinking)
        final: dict[str, Any] = {}
        waiting = contextlib.ExitStack()
        waiting.enter_context(spinner(""))  # until the first piece: a load or a long prompt
        try:
            for chunk in self.client.chat(self.model, self.request_messages(), tools=tools,
                                          format=s.format, keep_alive=s.keepalive,
                                          options=s.options or None, think=s.think):
                waiting.close()
                message = chunk.get("message") or {}
                printer.chunk(message)
                reply["content"] += message.get("content") or ""
                if message.get("tool_calls"):
                    reply.setdefault("tool_calls", []).extend(message["tool_calls"])
                if chunk.get("done"):
                    final = chunk
        except BaseException:
            waiting.close()
            printer.abort()
            raise
        waiting.close()
        printer.close()
        if s.verbose and final:
            print_stats(final)
        return final

    def clear(self) -> None:
        self.messages.clear()


def _completed_turns(stored: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A thread's messages as the model's context: an answer marked incomplete (Ctrl+C, an
    error) is dropped with the question it answered, as the live session forgot that turn."""
    kept: list[dict[str, Any]] = []
    for m in stored:
        if m["role"] == "assistant" and m.get("status", "completed") != "completed":
            if kept and kept[-1]["role"] == "user":
                kept.pop()
            continue
        if m["role"] in ("user", "assistant", "system"):
            kept.append({"role": m["role"], "content": _text(m)})
    return kept


def _text(message: dict[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, list):
        return "".join(str((p.get("text") or {}).get("value", "")) for p in content)
    return str(content or "")


def print_stats(final: dict[str, Any]) -> None:
    """Ollama's --verbose lines, on stderr so that stdout stays the answer."""
    def dur(ns: int) -> str:
        seconds = ns / 1e9
        return f"{seconds * 1000:.2f}ms" if seconds < 1 else f"{seconds:.3f}s"

    def rate(count: int, ns: int) -> str:
        return f"{count / (ns / 1e9):.2f} tokens/s" if ns else "n/a"

    pc, pd = final.get("prompt_eval_count", 0), final.get("prompt_eval_duration", 0)
    ec, ed = final.get("eval_count", 0), final.get("eval_duration", 0)
    rows = [
        ("total duration", dur(final.get("total_duration", 0))),
        ("load duration", dur(final.get("load_duration", 0))),
        ("prompt eval count", f"{pc} token(s)"),
        ("prompt eval duration", dur(pd)),
        ("prompt eval rate", rate(pc, pd)),
        ("eval count", f"{ec} token(s)"),
        ("eval duration", dur(ed)),
        ("eval rate", rate(ec, ed)),
    ]
    for name, value in rows:
        sys.stderr.write(f"{name + ':':<22}{value}\n")
