"""The Responses API's answers: one Response object, or the typed events that build it.

An answer's `Parsed` parts become output items in the order the model produced them: its
thinking a `reasoning` item (the text as a summary, the only form a local model has), its text
a `message` item with one `output_text` part, each tool call a `function_call` item. The
stream announces each item, sends its deltas, and closes it before the next one opens, as
OpenAI's does; the `openai` client's `responses.stream()` rebuilds the response from exactly
these events and checks that each item's id is the same when it opens and when it closes.
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from roost.api.responses_types import ResponsesRequest
from roost.chat.parse import Parsed
from roost.core import Done
from roost.server.inference import tool_call_id


def _id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(16)}"


def usage(done: Done) -> dict[str, Any]:
    """input_tokens is the whole prompt; the part whose KV cache was reused counts as cached."""
    prompt = done.whole_prompt
    return {"input_tokens": prompt,
            "input_tokens_details": {"cached_tokens": done.cached_tokens,
                                     "cache_write_tokens": 0},
            "output_tokens": done.eval_count,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": prompt + done.eval_count}


def _text_part(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def message_item(item_id: str, text: str, status: str = "completed") -> dict[str, Any]:
    content = [_text_part(text)] if status == "completed" else []
    return {"id": item_id, "type": "message", "role": "assistant", "status": status,
            "content": content}


def reasoning_item(item_id: str, text: str, status: str = "completed") -> dict[str, Any]:
    summary = [{"type": "summary_text", "text": text}] if status == "completed" else []
    return {"id": item_id, "type": "reasoning", "summary": summary, "status": status}


def call_item(call: dict[str, Any]) -> dict[str, Any]:
    """OpenAI sends a call's arguments as a JSON string, where the parser has an object."""
    function = call["function"]
    return {"id": _id("fc"), "type": "function_call", "status": "completed",
            "call_id": call.get("id") or tool_call_id(), "name": function["name"],
            "arguments": json.dumps(function["arguments"], ensure_ascii=False)}


class Envelope:
    """One response's id, time and the request fields OpenAI echoes back in every copy of it."""

    def __init__(self, body: ResponsesRequest) -> None:
        self.id = _id("resp")
        self.created_at = int(time.time())
        self.body = body

    def response(self, status: str, output: list[dict[str, Any]], done: Done | None = None,
                 error: dict[str, Any] | None = None) -> dict[str, Any]:
        b = self.body
        incomplete = {"reason": "max_output_tokens"} if status == "incomplete" else None
        text_format = (b.text.format.model_dump(by_alias=True, exclude_none=True)
                       if b.text and b.text.format else {"type": "text"})
        reasoning = b.reasoning.model_dump(exclude_none=True) if b.reasoning else {}
        return {
            "id": self.id, "object": "response", "created_at": self.created_at,
            "status": status, "completed_at": int(time.time()) if status == "completed" else None,
            "error": error, "incomplete_details": incomplete, "instructions": b.instructions,
            "max_output_tokens": b.max_output_tokens, "model": b.model, "output": output,
            "parallel_tool_calls": b.parallel_tool_calls is not False,
            "previous_response_id": None,
            "reasoning": {"effort": reasoning.get("effort"), "summary": reasoning.get("summary")},
            "store": False, "temperature": 1.0 if b.temperature is None else b.temperature,
            "text": {"format": text_format},
            "tool_choice": "auto" if b.tool_choice is None else b.tool_choice,
            "tools": [t.model_dump(exclude_none=True) for t in b.tools or []],
            "top_p": 1.0 if b.top_p is None else b.top_p, "truncation": "disabled",
            "usage": usage(done) if done is not None else None,
            "metadata": b.metadata or {}, "user": b.user, "background": False,
            "service_tier": "default",
        }

    def whole(self, part: Parsed, done: Done) -> dict[str, Any]:
        """A non-streamed answer: reasoning, then the message, then the tool calls."""
        output = []
        if part.thinking:
            output.append(reasoning_item(_id("rs"), part.thinking))
        if part.content or not part.tool_calls:
            output.append(message_item(_id("msg"), part.content))
        output += [call_item(c) for c in part.tool_calls]
        return self.response(status_of(done), output, done)


def status_of(done: Done) -> str:
    """max_output_tokens reached: OpenAI calls the response incomplete."""
    return "incomplete" if done.reason == "length" else "completed"


@dataclass
class _Open:
    """The item being streamed: a reasoning summary or a message, and its text so far."""

    kind: str
    id: str
    index: int
    text: str = ""


@dataclass
class Events:
    """The server-sent events of one streamed response, numbered in order."""

    envelope: Envelope
    sequence: int = 0
    output: list[dict[str, Any]] = field(default_factory=list)
    open: _Open | None = None

    def _event(self, kind: str, **fields: Any) -> bytes:
        data = {"type": kind, "sequence_number": self.sequence, **fields}
        self.sequence += 1
        body = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
        return f"event: {kind}\ndata: {body}\n\n".encode()

    def start(self) -> list[bytes]:
        snapshot = self.envelope.response("in_progress", [])
        return [self._event("response.created", response=snapshot),
                self._event("response.in_progress", response=snapshot)]

    def feed(self, part: Parsed) -> list[bytes]:
        out = []
        if part.thinking:
            out += self._text("reasoning", part.thinking)
        if part.content:
            out += self._text("message", part.content)
        for call in part.tool_calls:
            out += self._call(call)
        return out

    def finish(self, done: Done) -> list[bytes]:
        out = self._close()
        if not self.output:  # an empty answer is still an (empty) message
            out += self._open("message") + self._close()
        status = status_of(done)
        return out + [self._event(f"response.{status}", response=self.envelope.response(
            status, self.output, done))]

    def fail(self, message: str) -> list[bytes]:
        """After the status line, an error can only be told in the stream: OpenAI's two events."""
        error = {"code": "server_error", "message": message}
        return [self._event("error", code="server_error", message=message, param=None),
                self._event("response.failed",
                            response=self.envelope.response("failed", self.output, error=error))]

    def _text(self, kind: str, text: str) -> list[bytes]:
        out = []
        if self.open is None or self.open.kind != kind:
            out += self._close() + self._open(kind)
        assert self.open is not None
        self.open.text += text
        where = {"item_id": self.open.id, "output_index": self.open.index}
        if kind == "reasoning":
            out.append(self._event("response.reasoning_summary_text.delta", **where,
                                   summary_index=0, delta=text))
        else:
            out.append(self._event("response.output_text.delta", **where, content_index=0,
                                   delta=text, logprobs=[]))
        return out

    def _open(self, kind: str) -> list[bytes]:
        self.open = _Open(kind, _id("rs" if kind == "reasoning" else "msg"), len(self.output))
        build = reasoning_item if kind == "reasoning" else message_item
        item = build(self.open.id, "", "in_progress")
        self.output.append(item)
        where = {"item_id": self.open.id, "output_index": self.open.index}
        added = self._event("response.output_item.added", output_index=self.open.index, item=item)
        if kind == "reasoning":
            return [added, self._event("response.reasoning_summary_part.added", **where,
                                       summary_index=0, part={"type": "summary_text", "text": ""})]
        return [added, self._event("response.content_part.added", **where, content_index=0,
                                   part=_text_part(""))]

    def _close(self) -> list[bytes]:
        item, self.open = self.open, None
        if item is None:
            return []
        where = {"item_id": item.id, "output_index": item.index}
        if item.kind == "reasoning":
            part = {"type": "summary_text", "text": item.text}
            out = [self._event("response.reasoning_summary_text.done", **where, summary_index=0,
                               text=item.text),
                   self._event("response.reasoning_summary_part.done", **where, summary_index=0,
                               part=part)]
            done = reasoning_item(item.id, item.text)
        else:
            out = [self._event("response.output_text.done", **where, content_index=0,
                               text=item.text, logprobs=[]),
                   self._event("response.content_part.done", **where, content_index=0,
                               part=_text_part(item.text))]
            done = message_item(item.id, item.text)
        self.output[item.index] = done
        return [*out, self._event("response.output_item.done", output_index=item.index, item=done)]

    def _call(self, call: dict[str, Any]) -> list[bytes]:
        """A tool call arrives whole (the parser waits for its end): its arguments in one delta."""
        out = self._close()
        done = call_item(call)
        index = len(self.output)
        self.output.append(done)
        where = {"item_id": done["id"], "output_index": index}
        return [*out,
                self._event("response.output_item.added", output_index=index,
                            item={**done, "status": "in_progress", "arguments": ""}),
                self._event("response.function_call_arguments.delta", **where,
                            delta=done["arguments"]),
                self._event("response.function_call_arguments.done", **where, name=done["name"],
                            arguments=done["arguments"]),
                self._event("response.output_item.done", output_index=index, item=done)]
