"""OpenAI's API dialect (`/v1/*`): chat completions, completions and the model list.

Routes only translate: a request becomes a core request (server.inference), and the core
stream becomes OpenAI's objects, or its server-sent events when `stream` is set. OpenAI's
sampling defaults differ from Ollama's (temperature and top_p 1.0), `max_tokens` is
`num_predict`, and Ollama option names sent as extra body fields (`num_ctx`, `top_k`, ...)
are read as options. Errors take OpenAI's shape, `{"error": {"message", "type", ...}}`.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import secrets
import struct
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from roost.api.openai_types import (
    ChatCompletion,
    ChatCompletionRequest,
    ChatMessage,
    Completion,
    CompletionRequest,
    ContentPart,
    EmbeddingList,
    EmbeddingRequest,
    ModelList,
    ModelObject,
    OpenAIError,
    ResponseFormat,
)
from roost.api.responses import errors
from roost.chat.parse import Parsed
from roost.core import KNOWN_OPTIONS, Done, Turn
from roost.models.names import InvalidName, Name
from roost.models.resolve import NotFound, resolve
from roost.models.store import Manifest
from roost.scheduler.runner import RunnerError
from roost.server import engines, inference
from roost.server.disconnect import WatchedStreamingResponse, first_item, unless_disconnected
from roost.server.error_shapes import openai_body
from roost.server.inference import BadRequest

log = logging.getLogger("roost.server")

router = APIRouter(prefix="/v1", tags=["openai"], responses=errors(OpenAIError))
SSE = "text/event-stream"
FINGERPRINT = "fp_roost"
# OpenAI's defaults where Ollama's differ; the model's own parameters still override these.
DEFAULTS: dict[str, Any] = {"temperature": 1.0, "top_p": 1.0}


def _doc(model: type[Any], streams: bool = False) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a route: its 200 model (or server-sent events) and error bodies."""
    ok: dict[str, Any] = {"model": model}
    if streams:
        ok["description"] = "JSON, or server-sent events (`data: {chunk}`) when `stream` is true"
        ok["content"] = {SSE: {}}
    return {200: ok, 400: {"model": OpenAIError}, 404: {"model": OpenAIError},
            503: {"model": OpenAIError}}


_IMAGE_PARTS = frozenset({"image_url", "input_image", "image"})


def error(status: int, message: str, headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse(openai_body(status, message), status_code=status, headers=headers)


async def _guarded(fn: Callable[[], Any]) -> Response:
    """Map the errors that happen before a response starts onto statuses, in OpenAI's shape.

    The openai SDK retries 5xx by itself: a full queue says when to come back, and a
    failure a retry cannot fix (a model that does not load, a runner error) says not to.
    """
    return await inference.guarded(fn, _error_response)


def _error_response(exc: Exception, status: int, message: str, headers: dict[str, str]) -> Response:
    if isinstance(exc, RunnerError):
        headers = {**headers, "x-should-retry": "false"}
    return error(status, message, headers=headers)


# -- translating requests -------------------------------------------------------------------

def _options(body: ChatCompletionRequest | CompletionRequest,
             max_tokens: int | None) -> dict[str, Any]:
    """Ollama options from extra body fields, then OpenAI's own fields over them."""
    options = {k: v for k, v in (body.model_extra or {}).items() if k in KNOWN_OPTIONS}
    named = {
        "temperature": body.temperature, "top_p": body.top_p, "seed": body.seed,
        "stop": body.stop, "frequency_penalty": body.frequency_penalty,
        "presence_penalty": body.presence_penalty, "num_predict": max_tokens,
    }
    options.update({k: v for k, v in named.items() if v is not None})
    return options


def _keep_alive(body: ChatCompletionRequest | CompletionRequest) -> Any:
    return (body.model_extra or {}).get("keep_alive")


def _check_n(n: int | None) -> None:
    if n is not None and n != 1:
        raise BadRequest(f"n={n} is not supported: Roost generates one choice per request (n=1)")


def _format(response_format: ResponseFormat | None) -> Any:
    if response_format is None or response_format.type == "text":
        return None
    if response_format.type == "json_schema" and response_format.json_schema is not None:
        schema = response_format.json_schema.schema_
        if schema:
            return schema
    return "json"


def _think(body: ChatCompletionRequest) -> bool | str | None:
    """`reasoning.effort` (or `reasoning_effort`) as a think level; none leaves the default."""
    effort = body.reasoning.effort if body.reasoning else body.reasoning_effort
    if not effort:
        return None
    if effort not in inference.REASONING_EFFORTS:
        raise BadRequest(f"invalid reasoning value: {effort!r} (must be one of "
                         f"{', '.join(inference.REASONING_EFFORTS)})")
    return inference.REASONING_EFFORTS[effort]


def _content(model: str, content: str | list[ContentPart] | None) -> str:
    if content is None or isinstance(content, str):
        return content or ""
    texts = []
    for part in content:
        if part.type == "text":
            texts.append(part.text or "")
        elif part.type in _IMAGE_PARTS:
            raise BadRequest(f"model '{model}' does not support images")
        else:
            raise BadRequest(f"content part type '{part.type}' is not supported")
    return "\n".join(texts)


def _tool_call(call: dict[str, Any]) -> dict[str, Any]:
    """OpenAI sends arguments as a JSON string; chat templates expect the object."""
    function = dict(call.get("function") or {})
    args = function.get("arguments")
    if isinstance(args, str):
        with contextlib.suppress(ValueError):  # not JSON: the template gets the text as is
            function["arguments"] = json.loads(args) if args.strip() else {}
    return {**call, "function": function}


def _messages(model: str, messages: list[ChatMessage]) -> list[dict[str, Any]]:
    out = []
    for m in messages:
        role = m.role.lower()
        item: dict[str, Any] = {"role": "system" if role == "developer" else role,
                                "content": _content(model, m.content)}
        if m.tool_calls:
            item["tool_calls"] = [_tool_call(c) for c in m.tool_calls]
        if m.tool_call_id:
            item["tool_call_id"] = m.tool_call_id
        if m.name:
            item["name"] = m.name
        out.append(item)
    return out


# -- answers --------------------------------------------------------------------------------

def _usage(done: Done) -> dict[str, Any]:
    prompt = done.whole_prompt
    return {"prompt_tokens": prompt, "completion_tokens": done.eval_count,
            "total_tokens": prompt + done.eval_count,
            "prompt_tokens_details": {"cached_tokens": done.cached_tokens}}


def _finish(done: Done) -> str:
    return "length" if done.reason == "length" else "stop"


class _Answer:
    """One answer's envelope: its id, and `created` pinned when its first piece came."""

    def __init__(self, model: str, chat: bool, include_usage: bool) -> None:
        self.chat = chat
        self.model = model
        self.include_usage = include_usage
        self.id = ("chatcmpl-" if chat else "cmpl-") + secrets.token_hex(12)
        self.text_offset = 0
        self.created = int(time.time())

    def _envelope(self, obj: str, **fields: Any) -> dict[str, Any]:
        return {"id": self.id, "object": obj, "created": self.created, "model": self.model,
                "system_fingerprint": FINGERPRINT, **fields}

    def whole(self, part: Parsed, done: Done) -> dict[str, Any]:
        finish = "tool_calls" if part.tool_calls else _finish(done)
        if self.chat:
            message: dict[str, Any] = {"role": "assistant", "content": part.content}
            _add_extras(message, part)
            choice = {"index": 0, "message": message, "finish_reason": finish,
                      "logprobs": self._logprobs(part)}
            return self._envelope("chat.completion", choices=[choice], usage=_usage(done))
        choice = {"text": part.content, "index": 0, "finish_reason": finish,
                  "logprobs": self._logprobs(part)}
        return self._envelope("text_completion", choices=[choice], usage=_usage(done))

    def _logprobs(self, part: Parsed | None) -> dict[str, Any] | None:
        """Chat: {content: [entries]}; completions: the legacy parallel lists."""
        if part is None or not part.logprobs:
            return None
        if self.chat:
            return {"content": part.logprobs}
        offsets, at = [], self.text_offset
        for e in part.logprobs:
            offsets.append(at)
            at += len(e["token"])
        self.text_offset = at
        return {"tokens": [e["token"] for e in part.logprobs],
                "token_logprobs": [e["logprob"] for e in part.logprobs],
                "top_logprobs": [{t["token"]: t["logprob"] for t in e.get("top_logprobs", [])}
                                 for e in part.logprobs],
                "text_offset": offsets}

    def chunk(self, part: Parsed | None, finish: str | None = None,
              role: bool = False) -> dict[str, Any]:
        text = part.content if part is not None else None
        if self.chat:
            delta: dict[str, Any] = {"role": "assistant"} if role else {}
            if text or role:
                delta["content"] = text or ""
            if part is not None:
                _add_extras(delta, part)
            choice = {"index": 0, "delta": delta, "finish_reason": finish,
                      "logprobs": self._logprobs(part)}
            body = self._envelope("chat.completion.chunk", choices=[choice])
        else:
            choice = {"text": text or "", "index": 0, "finish_reason": finish,
                      "logprobs": self._logprobs(part)}
            body = self._envelope("text_completion", choices=[choice])
        if self.include_usage:
            body["usage"] = None  # as OpenAI does: only the last chunk carries usage
        return body

    def usage_chunk(self, done: Done) -> dict[str, Any]:
        obj = "chat.completion.chunk" if self.chat else "text_completion"
        return self._envelope(obj, choices=[], usage=_usage(done))


def _add_extras(message: dict[str, Any], part: Parsed) -> None:
    """Thinking as `reasoning` (Ollama's name), tool calls with arguments as a JSON string."""
    if part.thinking:
        message["reasoning"] = part.thinking
    if part.tool_calls:
        message["tool_calls"] = [
            {"index": c["function"].get("index", i), "id": c.get("id") or inference.tool_call_id(),
             "type": "function",
             "function": {"name": c["function"]["name"],
                          "arguments": json.dumps(c["function"]["arguments"], ensure_ascii=False)}}
            for i, c in enumerate(part.tool_calls)]


def _event(obj: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode() + b"\n\n"


async def _respond(request: Request, stream: AsyncGenerator[Parsed | Done, None], model: str,
                   chat: bool, streaming: bool, include_usage: bool) -> Response:
    """Await the first item before answering, so a failure to start is a real HTTP error."""
    answer = _Answer(model, chat, include_usage)
    if not streaming:
        whole, done = await unless_disconnected(request, inference.gather(stream))
        return JSONResponse(answer.whole(whole, done))
    first = await first_item(request, stream)

    async def events() -> AsyncIterator[bytes]:
        item: Parsed | Done = first
        called = False
        try:
            if chat:
                yield _event(answer.chunk(None, role=True))
            while not isinstance(item, Done):
                called = called or bool(item.tool_calls)
                yield _event(answer.chunk(item))
                item = await anext(stream)
            finish = "tool_calls" if called else _finish(item)
            yield _event(answer.chunk(None if chat else Parsed(), finish=finish))
            if include_usage:
                yield _event(answer.usage_chunk(item))
            yield b"data: [DONE]\n\n"
        except (RunnerError, StopAsyncIteration) as exc:
            yield _event(_stream_error(str(exc) or "the answer ended early"))
        except Exception as exc:  # the status line is sent: tell the client in the stream
            log.exception("OpenAI stream failed")
            yield _event(_stream_error(f"internal error: {exc}"))
        finally:
            await stream.aclose()

    return WatchedStreamingResponse(events(), media_type=SSE,
                             headers={"cache-control": "no-cache", "x-accel-buffering": "no"})


def _stream_error(message: str) -> dict[str, Any]:
    return openai_body(500, message)


# -- routes ---------------------------------------------------------------------------------

@router.post("/chat/completions", responses=_doc(ChatCompletion, streams=True))
async def chat_completions(request: Request, body: ChatCompletionRequest) -> Response:
    async def run() -> Response:
        _check_n(body.n)
        tools, forced = inference.tool_choice(body.tools, body.tool_choice)
        max_tokens = (body.max_completion_tokens if body.max_completion_tokens is not None
                      else body.max_tokens)
        stream = await engines.start(request, Turn(
            body.model, messages=_messages(body.model, body.messages), tools=tools,
            format=forced or _format(body.response_format), options=_options(body, max_tokens),
            defaults=DEFAULTS, keep_alive=_keep_alive(body), logprobs=body.logprobs,
            top_logprobs=body.top_logprobs, history=True, think=_think(body),
            grammar=body.grammar))
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        return await _respond(request, stream, body.model, True, body.stream, include_usage)

    return await _guarded(run)


@router.post("/completions", responses=_doc(Completion, streams=True))
async def completions(request: Request, body: CompletionRequest) -> Response:
    async def run() -> Response:
        _check_n(body.n)
        prompt = body.prompt
        if isinstance(prompt, list):
            if len(prompt) != 1:
                raise BadRequest("prompt: only a single string prompt is supported")
            prompt = prompt[0]
        stream = await engines.start(request, Turn(
            body.model, prompt=prompt, raw=True, options=_options(body, body.max_tokens),
            defaults=DEFAULTS, keep_alive=_keep_alive(body), think=False,
            logprobs=body.logprobs is not None, top_logprobs=body.logprobs,
            suffix=body.suffix or None, grammar=body.grammar))
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        return await _respond(request, stream, body.model, False, body.stream, include_usage)

    return await _guarded(run)


@router.post("/embeddings", responses=_doc(EmbeddingList))
async def embeddings(request: Request, body: EmbeddingRequest) -> Response:
    """Float lists or, as the openai SDK asks by default, base64 little-endian float32."""
    async def run() -> Response:
        texts = [body.input] if isinstance(body.input, str) else body.input
        if not texts or not all(isinstance(t, str) for t in texts):
            raise BadRequest("input must be a non-empty string or list of strings")
        ref = await engines.local_model(request, body.model, "embeddings")
        extra = body.model_extra or {}
        options = {k: v for k, v in extra.items() if k in KNOWN_OPTIONS}
        vectors, count, _ = await inference.embed(
            inference.scheduler(request), ref, [str(t) for t in texts], bool(extra.get("truncate", True)),
            body.dimensions, options, extra.get("keep_alive"))
        data = [{"object": "embedding", "index": i,
                 "embedding": _b64(v) if body.encoding_format == "base64" else v}
                for i, v in enumerate(vectors)]
        return JSONResponse({"object": "list", "data": data, "model": body.model,
                             "usage": {"prompt_tokens": count, "total_tokens": count}})

    return await _guarded(run)


def _b64(vector: list[float]) -> str:
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()


def _model_object(name: Name, manifest: Manifest) -> dict[str, Any]:
    return {"id": str(name), "object": "model", "created": int(manifest.modified_at.timestamp()),
            "owned_by": name.namespace}


@router.get("/models", responses=_doc(ModelList))
async def list_models(request: Request) -> Response:
    store = request.app.state.store
    return JSONResponse({"object": "list",
                         "data": [_model_object(name, manifest)
                                  for name, manifest in store.entries()]})


@router.get("/models/{model:path}", responses=_doc(ModelObject))
async def retrieve_model(request: Request, model: str) -> Response:
    target = await engines.remote_target(request, model)
    if target is not None:  # `MODEL:ENGINE` is usable, so it exists
        return JSONResponse({"id": model, "object": "model", "created": 0, "owned_by": target[0].name})
    try:
        ref = resolve(request.app.state.store, model)
    except (InvalidName, NotFound):
        return error(404, f"model '{model}' not found")
    return JSONResponse(_model_object(ref.name, ref.manifest))
