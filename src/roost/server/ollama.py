"""Ollama's generation routes (`/api/generate`, `/api/chat`, `/api/embed`, `/api/embeddings`).

Routes only translate: a request becomes a `core.Turn`, and the answer's stream becomes
Ollama's chunks (NDJSON, or one object). Durations are integer nanoseconds, timestamps RFC
3339. The model routes are in ollama_models.py; both share the error mapping here.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from roost.api.responses import (
    ChatResponse,
    EmbeddingsResponse,
    EmbedResponse,
    ErrorResponse,
    GenerateResponse,
    doc,
    errors,
)
from roost.api.types import (
    ChatRequest,
    EmbeddingsRequest,
    EmbedRequest,
    GenerateRequest,
)
from roost.chat.parse import Parsed
from roost.core import Done, Turn
from roost.scheduler.runner import RunnerError
from roost.server import engines, inference
from roost.server.disconnect import WatchedStreamingResponse, first_item, unless_disconnected
from roost.server.inference import BadRequest

router = APIRouter(prefix="/api", responses=errors(ErrorResponse))
NDJSON = "application/x-ndjson"


def now_rfc3339() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


async def guarded(fn: Callable[[], Any]) -> Response:
    """Errors before an answer starts, in Ollama's shape."""
    return await inference.guarded(fn, _error_response)


def _error_response(exc: Exception, status: int, message: str, headers: dict[str, str]) -> Response:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


# -- generation -----------------------------------------------------------------------------

def _final(model: str, done: Done, started: float, extra: dict[str, Any]) -> dict[str, Any]:
    """prompt_eval_count is the whole prompt, cached prefix included, as Ollama counts it
    (litellm bills by it); prompt_eval_duration is the time of the part evaluated."""
    total = int((asyncio.get_running_loop().time() - started) * 1e9)
    return {
        "model": model, "created_at": now_rfc3339(), **extra, "done": True,
        "done_reason": done.reason, "total_duration": total, "load_duration": done.load_ns,
        "prompt_eval_count": done.whole_prompt,
        "prompt_eval_duration": done.prompt_eval_ns,
        "eval_count": done.eval_count, "eval_duration": done.eval_ns,
        **({"context": done.context} if done.context else {}),
    }


async def _respond(
    request: Request, stream: AsyncGenerator[Parsed | Done, None], model: str, streaming: bool,
    shape: Callable[[Parsed], dict[str, Any]], calls_last: bool = False,
) -> Response:
    """Await the first item before answering, so a failure to start is a real HTTP error.

    With `calls_last` (generate), tool calls wait for the final chunk, where Ollama puts them.
    """
    started = asyncio.get_running_loop().time()
    if not streaming:
        whole, done = await unless_disconnected(request, inference.gather(stream))
        return JSONResponse(_final(model, done, started, shape(whole)))
    first = await first_item(request, stream)

    async def lines() -> AsyncIterator[bytes]:
        item: Parsed | Done | None = first
        held: list[dict[str, Any]] = []
        try:
            while item is not None:
                if isinstance(item, Done):
                    yield ndjson_line(_final(model, item, started, shape(Parsed(tool_calls=held))))
                    return
                if calls_last and item.tool_calls:
                    held += item.tool_calls
                    item.tool_calls = []
                if item:
                    yield ndjson_line({"model": model, "created_at": now_rfc3339(),
                                       **shape(item), "done": False})
                item = await anext(stream)
        except (RunnerError, StopAsyncIteration) as exc:
            yield ndjson_line({"error": str(exc) or "the stream ended early"})
        finally:
            await stream.aclose()

    return WatchedStreamingResponse(lines(), media_type=NDJSON)


def _generate_shape(p: Parsed) -> dict[str, Any]:
    out: dict[str, Any] = {"response": p.content}
    if p.thinking:
        out["thinking"] = p.thinking
    if p.logprobs:
        out["logprobs"] = p.logprobs
    if p.tool_calls:
        out["tool_calls"] = p.tool_calls
    return out


def _chat_shape(p: Parsed) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": p.content}
    if p.thinking:
        message["thinking"] = p.thinking
    if p.tool_calls:
        message["tool_calls"] = p.tool_calls
    return {"message": message, **({"logprobs": p.logprobs} if p.logprobs else {})}


def ndjson_line(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"


async def _load_response(request: Request, model: str, keep_alive: Any,
                         extra: dict[str, Any]) -> Response:
    """An empty prompt loads (or with keep_alive 0 unloads); a remote engine has nothing to load."""
    if await engines.remote_target(request, model) is not None:
        return JSONResponse({"model": model, "created_at": now_rfc3339(), **extra, "done": True,
                             "done_reason": "load"})
    ref = inference.resolve_model(request, model)
    reason = await inference.load_only(
        inference.scheduler(request), ref, inference.keep_alive_seconds(keep_alive)
    )
    return JSONResponse({"model": str(ref.name), "created_at": now_rfc3339(), **extra,
                         "done": True, "done_reason": reason})


@router.post("/generate", responses=doc(GenerateResponse, streams=True))
async def generate(request: Request, body: GenerateRequest) -> Response:
    async def run() -> Response:
        if not body.prompt and not body.suffix:
            return await _load_response(request, body.model, body.keep_alive, {"response": ""})
        if body.images:
            raise BadRequest(f"model '{body.model}' does not support images")
        if body.raw and (body.template or body.system or body.context):
            raise BadRequest("raw mode does not support template, system, or context")
        stream = await engines.start(request, Turn(
            body.model, prompt=body.prompt, raw=body.raw, system=body.system,
            template=body.template, think=body.think, format=body.format, options=body.options,
            keep_alive=body.keep_alive, logprobs=body.logprobs, top_logprobs=body.top_logprobs,
            suffix=body.suffix or None, context=body.context or None, return_context=not body.raw,
            truncate=body.truncate is not False, shift=body.shift is not False, grammar=body.grammar,
            tagged_calls=not (body.suffix or body.raw), history=True))
        return await _respond(request, stream, body.model, body.stream, _generate_shape,
                              calls_last=True)

    return await guarded(run)


@router.post("/chat", responses=doc(ChatResponse, streams=True))
async def chat(request: Request, body: ChatRequest) -> Response:
    async def run() -> Response:
        if not body.messages:
            return await _load_response(
                request, body.model, body.keep_alive, {"message": {"role": "assistant", "content": ""}}
            )
        if any(m.images for m in body.messages):
            raise BadRequest(f"model '{body.model}' does not support images")
        stream = await engines.start(request, Turn(
            body.model, messages=[_message_dict(m.model_dump(exclude_none=True)) for m in body.messages],
            tools=body.tools, think=body.think, format=body.format, options=body.options,
            keep_alive=body.keep_alive, logprobs=body.logprobs, top_logprobs=body.top_logprobs,
            history=True, truncate=body.truncate is not False, shift=body.shift is not False,
            grammar=body.grammar))
        return await _respond(request, stream, body.model, body.stream, _chat_shape)

    return await guarded(run)


@router.post("/embed", responses=doc(EmbedResponse))
async def embed(request: Request, body: EmbedRequest) -> Response:
    async def run() -> Response:
        ref = await engines.local_model(request, body.model, "embeddings")
        texts = [body.input] if isinstance(body.input, str) else list(body.input)
        texts = [t for t in texts if t] if isinstance(body.input, str) else texts
        started = asyncio.get_running_loop().time()
        vectors, count, load_ns = await inference.embed(
            inference.scheduler(request), ref, texts, body.truncate, body.dimensions, body.options,
            body.keep_alive)
        total = int((asyncio.get_running_loop().time() - started) * 1e9)
        return JSONResponse({"model": body.model, "embeddings": vectors, "total_duration": total,
                             "load_duration": load_ns, "prompt_eval_count": count})

    return await guarded(run)


@router.post("/embeddings", responses=doc(EmbeddingsResponse))
async def embeddings(request: Request, body: EmbeddingsRequest) -> Response:
    async def run() -> Response:
        ref = await engines.local_model(request, body.model, "embeddings")
        texts = [body.prompt] if body.prompt else []
        vectors, _, _ = await inference.embed(inference.scheduler(request), ref, texts, True, None,
                                              body.options, body.keep_alive)
        return JSONResponse({"embedding": vectors[0] if vectors else []})

    return await guarded(run)


def _message_dict(m: dict[str, Any]) -> dict[str, Any]:
    m["role"] = str(m.get("role", "user")).lower()
    for call in m.get("tool_calls") or []:
        args = call.get("function", {}).get("arguments")
        if isinstance(args, dict):
            call["function"]["arguments"] = args  # templates take the object
    return m
