"""OpenAI's Responses API (`POST /v1/responses`), served statelessly, as Ollama serves it.

A request becomes the same `Turn` that `/v1/chat/completions` makes: `instructions` a system
message, input items chat messages (a `function_call` an assistant's tool call, its
`function_call_output` the tool's answer), flat function tools the nested shape the chat
templates read, `text.format` the grammar-constrained `format`, `reasoning.effort` a think
level. The answer's stream is the one every dialect gets; openai_responses_output turns it into
a Response object or the API's typed events. Nothing is stored, so a request that points at an
earlier response (`previous_response_id`, `conversation`) is refused with a 400 saying so.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from roost.api.openai_types import OpenAIError
from roost.api.responses import errors
from roost.api.responses_types import Reasoning, ResponseObject, ResponsesRequest, ResponsesTool
from roost.api.responses_types import TextConfig as ResponsesText
from roost.chat.parse import Parsed
from roost.core import KNOWN_OPTIONS, Done, Turn
from roost.scheduler.runner import RunnerError
from roost.server import engines, inference
from roost.server.disconnect import WatchedStreamingResponse, first_item, unless_disconnected
from roost.server.inference import BadRequest
from roost.server.openai import DEFAULTS, SSE, error
from roost.server.openai_responses_output import Envelope, Events

log = logging.getLogger("roost.server")

router = APIRouter(prefix="/v1", tags=["openai"], responses=errors(OpenAIError))
STATELESS = "Roost's /v1/responses is stateless: send the whole conversation in `input`"
_TEXT_PARTS = frozenset({"input_text", "output_text", "text", "summary_text", "reasoning_text"})


# -- the request --------------------------------------------------------------------------

def to_turn(body: ResponsesRequest) -> Turn:
    """The chat turn a Responses request asks for; BadRequest for what Roost cannot serve."""
    _refuse_state(body)
    tools, forced = inference.tool_choice(_tools(body.tools), _choice(body.tool_choice))
    return Turn(body.model, messages=_Conversation(body).messages(), tools=tools,
                think=_think(body.reasoning), format=forced or _format(body.text),
                options=_options(body), defaults=DEFAULTS,
                keep_alive=body.keep_alive, history=True)


def _refuse_state(body: ResponsesRequest) -> None:
    if body.previous_response_id is not None:
        raise BadRequest(f"previous_response_id is not supported: {STATELESS}")
    if body.conversation is not None:
        raise BadRequest(f"conversation is not supported: {STATELESS}")
    if body.background:
        raise BadRequest("background responses are not supported: Roost answers in the request")


def _options(body: ResponsesRequest) -> dict[str, Any]:
    """Ollama option names sent as extra body fields (seed, num_ctx, ...), then OpenAI's own."""
    options = {k: v for k, v in (body.model_extra or {}).items() if k in KNOWN_OPTIONS}
    named = {"temperature": body.temperature, "top_p": body.top_p,
             "num_predict": body.max_output_tokens}
    options.update({k: v for k, v in named.items() if v is not None})
    return options


def _think(reasoning: Reasoning | None) -> Any:
    """reasoning.effort as a think level, mapped as chat completions map it; none: no thinking."""
    effort = reasoning.effort if reasoning is not None else None
    if not effort:
        return None
    if effort not in inference.REASONING_EFFORTS:
        levels = ", ".join(inference.REASONING_EFFORTS)
        raise BadRequest(f"reasoning.effort {effort!r} must be one of {levels}")
    return inference.REASONING_EFFORTS[effort]


def _format(text: ResponsesText | None) -> Any:
    fmt = text.format if text is not None else None
    if fmt is None or fmt.type == "text":
        return None
    if fmt.type == "json_object":
        return "json"
    if not fmt.schema_:
        raise BadRequest("text.format: a json_schema format needs its `schema`")
    return fmt.schema_


def _tools(tools: list[ResponsesTool] | None) -> list[dict[str, Any]] | None:
    """Flat function tools in the nested shape the chat templates (and tool_choice) read."""
    out = []
    for tool in tools or []:
        if tool.type != "function":
            raise BadRequest(f"tool type '{tool.type}' is not supported: Roost serves function tools")
        nested = (tool.model_extra or {}).get("function")  # the chat shape, sent here by mistake
        function = dict(nested) if isinstance(nested, dict) else {
            "name": tool.name, "description": tool.description or "",
            "parameters": tool.parameters or {"type": "object", "properties": {}}}
        if not isinstance(function.get("name"), str) or not function["name"]:
            raise BadRequest("tools: each function tool needs a `name`")
        out.append({"type": "function", "function": function})
    return out or None


def _choice(choice: str | dict[str, Any] | None) -> str | dict[str, Any] | None:
    """The Responses API's tool_choice in chat completions' shape."""
    if not isinstance(choice, dict):
        return choice
    if choice.get("type") == "function":
        return {"type": "function", "function": {"name": choice.get("name")}}
    raise BadRequest(f"tool_choice of type '{choice.get('type')}' is not supported")


class _Conversation:
    """Input items to chat messages, in order; each item type has its own method."""

    def __init__(self, body: ResponsesRequest) -> None:
        self.body = body
        self.out: list[dict[str, Any]] = []
        self.names: dict[str, str] = {}  # call_id -> the function it called
        self.thinking = ""  # a reasoning item, kept for the assistant message after it

    def messages(self) -> list[dict[str, Any]]:
        if self.body.instructions:
            self.out.append({"role": "system", "content": self.body.instructions})
        items = self.body.input
        if isinstance(items, str):
            self.out.append({"role": "user", "content": items})
            return self.out
        if not items:
            raise BadRequest("input: the list of input items is empty")
        handlers: dict[str, Callable[[dict[str, Any], str], None]] = {
            "message": self.message, "function_call": self.function_call,
            "function_call_output": self.function_call_output, "reasoning": self.reasoning}
        for i, item in enumerate(items):
            kind = item.get("type") or ("message" if "role" in item else None)
            where = f"input[{i}]"
            if kind == "item_reference":
                raise BadRequest(f"{where}: item references are not supported: {STATELESS}")
            if kind not in handlers:
                raise BadRequest(f"{where}: input item type {kind!r} is not supported")
            handlers[kind](item, where)
        return self.out

    def message(self, item: dict[str, Any], where: str) -> None:
        role = item.get("role")
        if role not in ("user", "assistant", "system", "developer"):
            raise BadRequest(f"{where}: role must be user, assistant, system or developer")
        message: dict[str, Any] = {"role": "system" if role == "developer" else role,
                                   "content": self._text(item.get("content"), where)}
        if role == "assistant" and self.thinking:
            message["thinking"], self.thinking = self.thinking, ""
        self.out.append(message)

    def function_call(self, item: dict[str, Any], where: str) -> None:
        name, call_id, args = item.get("name"), item.get("call_id"), item.get("arguments") or "{}"
        if not isinstance(name, str) or not isinstance(call_id, str) or not isinstance(args, str):
            raise BadRequest(f"{where}: a function_call needs `name`, `call_id` and `arguments` "
                             "(a JSON string)")
        try:
            arguments = json.loads(args)
        except ValueError as exc:
            raise BadRequest(f"{where}: arguments are not valid JSON: {exc}") from exc
        self.names[call_id] = name
        call = {"id": call_id, "type": "function",
                "function": {"name": name, "arguments": arguments}}
        last = self.out[-1] if self.out else None
        if last is None or last["role"] != "assistant" or ("thinking" in last and self.thinking):
            last = {"role": "assistant", "content": ""}
            self.out.append(last)
        last.setdefault("tool_calls", []).append(call)
        if self.thinking:
            last["thinking"], self.thinking = self.thinking, ""

    def function_call_output(self, item: dict[str, Any], where: str) -> None:
        call_id = item.get("call_id")
        if not isinstance(call_id, str):
            raise BadRequest(f"{where}: a function_call_output needs the `call_id` it answers")
        message = {"role": "tool", "content": self._text(item.get("output"), where),
                   "tool_call_id": call_id}
        if call_id in self.names:
            message["name"] = self.names[call_id]
        self.out.append(message)

    def reasoning(self, item: dict[str, Any], where: str) -> None:
        parts = item.get("content") or item.get("summary") or []
        self.thinking = self._text(parts, where) if parts else ""

    def _text(self, content: Any, where: str) -> str:
        """A string, or text parts joined; an image or a file is refused, as chat refuses it."""
        if content is None or isinstance(content, str):
            return content or ""
        if not isinstance(content, list):
            raise BadRequest(f"{where}: content must be a string or a list of parts")
        texts = []
        for part in content:
            kind = part.get("type") if isinstance(part, dict) else None
            if kind in _TEXT_PARTS and isinstance(part.get("text"), str):
                texts.append(part["text"])
            elif kind == "refusal":
                texts.append(str(part.get("refusal", "")))
            elif kind == "input_image":
                raise BadRequest(f"{where}: model '{self.body.model}' does not support images")
            else:
                raise BadRequest(f"{where}: content part type {kind!r} is not supported")
        return "\n".join(texts)


# -- the answer ---------------------------------------------------------------------------

async def _events(events: Events, first: Parsed | Done,
                  stream: AsyncGenerator[Parsed | Done, None]) -> AsyncIterator[bytes]:
    item = first
    try:
        for event in events.start():
            yield event
        while not isinstance(item, Done):
            for event in events.feed(item):
                yield event
            item = await anext(stream)
        for event in events.finish(item):
            yield event
    except (RunnerError, StopAsyncIteration) as exc:
        for event in events.fail(str(exc) or "the answer ended early"):
            yield event
    except Exception as exc:  # the status line is sent: tell the client in the stream
        log.exception("Responses stream failed")
        for event in events.fail(f"internal error: {exc}"):
            yield event
    finally:
        await stream.aclose()


def _error_response(exc: Exception, status: int, message: str, headers: dict[str, str]) -> Response:
    """OpenAI's error shape; a runner's failure tells the openai client not to retry it."""
    if isinstance(exc, RunnerError):
        headers = {**headers, "x-should-retry": "false"}
    return error(status, message, headers=headers)


_DOC: dict[int | str, dict[str, Any]] = {200: {
    "model": ResponseObject,
    "description": "a Response, or its typed server-sent events (`event:` and `data:` lines) "
                   "when `stream` is true",
    "content": {SSE: {}}}}


@router.post("/responses", responses=_DOC)
async def create_response(request: Request, body: ResponsesRequest) -> Response:
    async def run() -> Response:
        stream = await engines.start(request, to_turn(body))
        envelope = Envelope(body)
        if not body.stream:
            whole, done = await unless_disconnected(request, inference.gather(stream))
            return JSONResponse(envelope.whole(whole, done))
        first = await first_item(request, stream)  # a failure to start is still an HTTP error
        return WatchedStreamingResponse(
            _events(Events(envelope), first, stream), media_type=SSE,
            headers={"cache-control": "no-cache", "x-accel-buffering": "no"})

    return await inference.guarded(run, _error_response)
