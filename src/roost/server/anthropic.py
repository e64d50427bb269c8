"""Anthropic's Messages API (`POST /v1/messages`), as Ollama serves it, on Roost's chat path.

The route only translates: the request's system prompt, messages (text, tool_use and
tool_result blocks) and tools become a chat turn for server.engines, and the answer's stream
becomes a Message with content blocks, or Anthropic's typed server-sent events
(`message_start`, `content_block_start|delta|stop`, `message_delta`, `message_stop`) when
`stream` is set. Images and documents are refused: Roost serves no vision model. Errors take
Anthropic's shape, `{"type": "error", "error": {"type", "message"}}`, with the same statuses as
the other dialects.
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from roost.api.anthropic_types import (
    AnthropicError,
    Block,
    CountTokensRequest,
    Message,
    MessageParam,
    MessagesRequest,
    TokenCount,
)
from roost.api.responses import errors
from roost.chat.parse import Parsed
from roost.core import KNOWN_OPTIONS, Done, Turn
from roost.scheduler.runner import RunnerError
from roost.server import engines, inference
from roost.server.disconnect import WatchedStreamingResponse, first_item, unless_disconnected
from roost.server.error_shapes import ANTHROPIC_PATH, anthropic_body
from roost.server.inference import BadRequest

log = logging.getLogger("roost.server")

PATH = ANTHROPIC_PATH
router = APIRouter(prefix="/v1", tags=["anthropic"], responses=errors(AnthropicError))
SSE = "text/event-stream"
_UNSEEN = frozenset({"image", "document"})
_EFFORTS = frozenset({"low", "medium", "high", "max"})


def error(status: int, message: str, headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse(anthropic_body(status, message), status_code=status, headers=headers)


def _error_response(exc: Exception, status: int, message: str, headers: dict[str, str]) -> Response:
    """A failure a retry cannot fix says so: the anthropic SDK retries every 5xx by itself."""
    if isinstance(exc, RunnerError) and status != 503:
        headers = {**headers, "x-should-retry": "false"}
    return error(status, message, headers=headers)


# -- translating the request ----------------------------------------------------------------

def _text(blocks: str | list[Block] | None, where: str) -> str:
    """The text of a string or of text blocks; an image is refused, as nothing here can see."""
    if blocks is None or isinstance(blocks, str):
        return blocks or ""
    texts = []
    for b in blocks:
        if b.type == "text":
            texts.append(b.text or "")
        elif b.type in _UNSEEN:
            raise BadRequest(f"{where}: {b.type} blocks are not supported (Roost serves no vision model)")
        else:
            raise BadRequest(f"{where}: a {b.type} block is not allowed here")
    return "\n".join(texts)


def _tool_result(b: Block, names: dict[str, str], where: str) -> dict[str, Any]:
    if not b.tool_use_id:
        raise BadRequest(f"{where}: tool_result needs tool_use_id")
    content = _text(b.content, where)
    message = {"role": "tool", "content": f"Error: {content}" if b.is_error else content,
               "tool_call_id": b.tool_use_id}
    if b.tool_use_id in names:
        message["name"] = names[b.tool_use_id]
    return message


def _tool_use(b: Block, names: dict[str, str], where: str) -> dict[str, Any]:
    if not b.id or not b.name:
        raise BadRequest(f"{where}: tool_use needs id and name")
    names[b.id] = b.name
    return {"id": b.id, "type": "function", "function": {"name": b.name, "arguments": b.input or {}}}


def _message(m: MessageParam, i: int, names: dict[str, str]) -> list[dict[str, Any]]:
    """One Anthropic message as chat messages: a user's tool results come first, as `tool`
    messages, then its text; an assistant's tool_use blocks become its tool_calls."""
    if isinstance(m.content, str):
        return [{"role": m.role, "content": m.content}]
    where = f"messages.{i}.content"
    texts: list[str] = []
    thinking: list[str] = []
    calls: list[dict[str, Any]] = []
    results: list[dict[str, Any]] = []
    for b in m.content:
        if b.type == "text":
            texts.append(b.text or "")
        elif b.type == "tool_use" and m.role == "assistant":
            calls.append(_tool_use(b, names, where))
        elif b.type == "tool_result" and m.role == "user":
            results.append(_tool_result(b, names, where))
        elif b.type == "thinking" and m.role == "assistant":
            thinking.append(b.thinking or "")
        elif b.type == "redacted_thinking":
            continue
        elif b.type in _UNSEEN:
            raise BadRequest(f"{where}: {b.type} blocks are not supported (Roost serves no vision model)")
        else:
            raise BadRequest(f"{where}: a {b.type} block is not allowed in a {m.role} message")
    out = list(results)
    if texts or calls or thinking or not results:
        message: dict[str, Any] = {"role": m.role, "content": "\n".join(texts)}
        if calls:
            message["tool_calls"] = calls
        if thinking:
            message["thinking"] = "\n".join(thinking)
        out.append(message)
    return out


def _messages(body: CountTokensRequest) -> list[dict[str, Any]]:
    system = _text(body.system, "system")
    out = [{"role": "system", "content": system}] if system else []
    names: dict[str, str] = {}  # tool_use id -> tool name, for the results that answer them
    for i, m in enumerate(body.messages):
        out += _message(m, i, names)
    return out


def _tools(body: CountTokensRequest) -> tuple[list[dict[str, Any]] | None, Any]:
    """The tools as the chat template sees them, and tool_choice as an output constraint."""
    if not body.tools:
        return None, None
    for t in body.tools:
        if t.type not in (None, "custom"):
            raise BadRequest(f"tools: server tool '{t.type}' is not supported; define it as a custom tool")
    tools = [{"type": "function", "function": {"name": t.name, "description": t.description or "",
                                               "parameters": t.input_schema}} for t in body.tools]
    choice = body.tool_choice
    if choice is None or choice.type == "auto":
        return inference.tool_choice(tools, "auto")
    if choice.type == "any":
        return inference.tool_choice(tools, "required")
    if choice.type == "none":
        return inference.tool_choice(tools, "none")
    return inference.tool_choice(tools, {"type": "function", "function": {"name": choice.name}})


def _think(body: CountTokensRequest) -> Any:
    if body.thinking is not None:
        return body.thinking.type != "disabled"
    effort = (body.output_config.effort or "").lower() if body.output_config else ""
    effort = "high" if effort == "xhigh" else effort
    return effort if effort in _EFFORTS else None


def _options(body: MessagesRequest) -> dict[str, Any]:
    """Ollama options sent as extra fields, then the request's own over them. Sampling defaults
    are Ollama's, as Ollama serves this API: the newest anthropic clients cannot even send a
    temperature except as an extra field."""
    options = {k: v for k, v in (body.model_extra or {}).items() if k in KNOWN_OPTIONS}
    named = {"num_predict": body.max_tokens, "temperature": body.temperature, "top_p": body.top_p,
             "top_k": body.top_k, "stop": body.stop_sequences}
    return {**options, **{k: v for k, v in named.items() if v is not None}}


def _format(body: CountTokensRequest) -> Any:
    config = body.output_config
    return config.format.schema_ if config is not None and config.format is not None else None


def _turn(body: CountTokensRequest) -> Turn:
    tools, forced = _tools(body)
    options = _options(body) if isinstance(body, MessagesRequest) else None
    return Turn(body.model, messages=_messages(body), tools=tools, format=forced or _format(body),
                think=_think(body), options=options, keep_alive=body.keep_alive, history=True)


# -- the answer -----------------------------------------------------------------------------

def _usage(done: Done) -> dict[str, int]:
    return {"input_tokens": done.whole_prompt,
            "output_tokens": done.eval_count}


def _stop(done: Done, called: bool, stops: list[str]) -> tuple[str, str | None]:
    """stop_reason and stop_sequence: a tool call, the token limit, a request's stop string,
    or the model's own end of turn."""
    if called:
        return "tool_use", None
    if done.reason == "length":
        return "max_tokens", None
    if done.stop_sequence is not None and done.stop_sequence in stops:
        return "stop_sequence", done.stop_sequence
    return "end_turn", None


def _tool_block(call: dict[str, Any]) -> dict[str, Any]:
    function = call["function"]
    return {"type": "tool_use", "id": "toolu_" + secrets.token_hex(12), "name": function["name"],
            "input": function.get("arguments") or {}}


def _blocks(part: Parsed) -> list[dict[str, Any]]:
    """A whole answer's content: its thinking, its text, then its tool calls (Ollama's order)."""
    blocks: list[dict[str, Any]] = []
    if part.thinking:
        blocks.append({"type": "thinking", "thinking": part.thinking, "signature": ""})
    if part.content:
        blocks.append({"type": "text", "text": part.content})
    return blocks + [_tool_block(c) for c in part.tool_calls]


def _envelope(msg_id: str, model: str, content: list[dict[str, Any]], stop_reason: str | None,
              stop_sequence: str | None, usage: dict[str, int]) -> dict[str, Any]:
    return {"id": msg_id, "type": "message", "role": "assistant", "model": model, "content": content,
            "stop_reason": stop_reason, "stop_sequence": stop_sequence, "usage": usage}


def _event(kind: str, data: dict[str, Any]) -> bytes:
    body = json.dumps({"type": kind, **data}, ensure_ascii=False, separators=(",", ":"))
    return f"event: {kind}\ndata: {body}\n\n".encode()


class _Blocks:
    """The open content block of a streamed answer: a new kind of part closes it and opens the next."""

    def __init__(self) -> None:
        self.index = -1
        self.open: str | None = None
        self.called = False

    def _start(self, kind: str, block: dict[str, Any]) -> list[bytes]:
        events = self.close()
        self.index += 1
        self.open = kind
        return [*events, _event("content_block_start", {"index": self.index, "content_block": block})]

    def close(self) -> list[bytes]:
        if self.open is None:
            return []
        self.open = None
        return [_event("content_block_stop", {"index": self.index})]

    def _delta(self, delta: dict[str, Any]) -> bytes:
        return _event("content_block_delta", {"index": self.index, "delta": delta})

    def feed(self, part: Parsed) -> list[bytes]:
        events: list[bytes] = []
        if part.thinking:
            if self.open != "thinking":
                events += self._start("thinking", {"type": "thinking", "thinking": "", "signature": ""})
            events.append(self._delta({"type": "thinking_delta", "thinking": part.thinking}))
        if part.content:
            if self.open != "text":
                events += self._start("text", {"type": "text", "text": ""})
            events.append(self._delta({"type": "text_delta", "text": part.content}))
        for call in part.tool_calls:  # a call is parsed whole: its input goes in one delta
            block = _tool_block(call)
            arguments = json.dumps(block["input"], ensure_ascii=False)
            events += self._start("tool_use", {**block, "input": {}})
            events.append(self._delta({"type": "input_json_delta", "partial_json": arguments}))
            events += self.close()
            self.called = True
        return events


async def _respond(request: Request, stream: AsyncGenerator[Parsed | Done, None],
                   body: MessagesRequest) -> Response:
    """Await the first item before answering, so a failure to start is a real HTTP error."""
    msg_id = "msg_" + secrets.token_hex(12)
    stops = body.stop_sequences or []
    if not body.stream:
        whole, done = await unless_disconnected(request, inference.gather(stream))
        reason, sequence = _stop(done, bool(whole.tool_calls), stops)
        return JSONResponse(_envelope(msg_id, body.model, _blocks(whole), reason, sequence, _usage(done)))
    first = await first_item(request, stream)

    async def events() -> AsyncIterator[bytes]:
        blocks = _Blocks()
        item: Parsed | Done = first
        try:
            start = _envelope(msg_id, body.model, [], None, None, {"input_tokens": 0, "output_tokens": 0})
            yield _event("message_start", {"message": start})
            yield _event("ping", {})
            while not isinstance(item, Done):
                for event in blocks.feed(item):
                    yield event
                item = await anext(stream)
            for event in blocks.close():
                yield event
            reason, sequence = _stop(item, blocks.called, stops)
            yield _event("message_delta", {"delta": {"stop_reason": reason, "stop_sequence": sequence},
                                           "usage": _usage(item)})
            yield _event("message_stop", {})
        except (RunnerError, StopAsyncIteration) as exc:
            ended = str(exc) or "the answer ended early"
            yield _event("error", {"error": anthropic_body(500, ended)["error"]})
        except Exception as exc:  # the status line is sent: tell the client in the stream
            log.exception("Anthropic stream failed")
            yield _event("error", {"error": anthropic_body(500, f"internal error: {exc}")["error"]})
        finally:
            await stream.aclose()

    return WatchedStreamingResponse(events(), media_type=SSE,
                                    headers={"cache-control": "no-cache", "x-accel-buffering": "no"})


def _doc() -> dict[int | str, dict[str, Any]]:
    ok = {"model": Message, "content": {SSE: {}},
          "description": "a Message, or Anthropic's typed server-sent events when `stream` is true"}
    return {200: ok, 400: {"model": AnthropicError}, 404: {"model": AnthropicError},
            503: {"model": AnthropicError}}


@router.post("/messages", responses=_doc())
async def messages(request: Request, body: MessagesRequest) -> Response:
    async def run() -> Response:
        stream = await engines.start(request, _turn(body))
        return await _respond(request, stream, body)

    return await inference.guarded(run, _error_response)


@router.post("/messages/count_tokens", responses={**_doc(), 200: {"model": TokenCount}})
async def count_tokens(request: Request, body: CountTokensRequest) -> Response:
    """Anthropic's token count (Claude Code asks before long requests): the prompt rendered by
    the model's template, as /v1/messages would send it, in the model's own tokens."""
    async def run() -> Response:
        return JSONResponse({"input_tokens": await engines.count_tokens(request, _turn(body))})

    return await inference.guarded(run, _error_response)
