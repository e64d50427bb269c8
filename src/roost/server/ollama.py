"""Ollama's native API (`/api/*`), with Ollama's field names, status codes and NDJSON streams.

Routes only translate: a request becomes a core request (server.inference), and the core
stream becomes Ollama's chunks. Durations are integer nanoseconds, timestamps RFC 3339.
"""

from __future__ import annotations

import asyncio
import errno
import json
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from roost import __version__
from roost.api.responses import (
    ChatResponse,
    EmbeddingsResponse,
    EmbedResponse,
    GenerateResponse,
    ListResponse,
    ProcessResponse,
    ProgressResponse,
    ShowResponse,
    VersionResponse,
    doc,
)
from roost.api.types import (
    ChatRequest,
    CopyRequest,
    CreateRequest,
    EmbeddingsRequest,
    EmbedRequest,
    GenerateRequest,
    ModelRequest,
)
from roost.chat.parse import Parsed
from roost.core import Done
from roost.models import catalog, transfer
from roost.models.create import CreateError, Spec, copy, create
from roost.models.names import DEFAULT_HOST, InvalidName, Name
from roost.models.pull import ModelNotFound, pull
from roost.models.resolve import ModelRef, NotFound
from roost.models.store import DigestMismatch, StoreError, parse_digest
from roost.scheduler.runner import RunnerError
from roost.scheduler.scheduler import QueueFull
from roost.server import inference
from roost.server.disconnect import ClientGone, unless_disconnected
from roost.server.inference import BadRequest

router = APIRouter(prefix="/api")
NDJSON = "application/x-ndjson"


def now_rfc3339() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


async def _guarded(fn: Callable[[], Any]) -> Response:
    """Map the errors that happen before a response starts onto Ollama's statuses."""
    try:
        return await fn()  # type: ignore[no-any-return]
    except BadRequest as exc:
        return error(400, str(exc))
    except NotFound as exc:
        return error(404, str(exc))
    except QueueFull as exc:
        return JSONResponse({"error": str(exc)}, status_code=503, headers={"retry-after": "1"})
    except RunnerError as exc:
        return error(exc.status, str(exc))
    except ClientGone:
        return Response(status_code=499)  # nobody reads it: the status is for the access log


# -- generation -----------------------------------------------------------------------------

def _final(model: str, done: Done, started: float, extra: dict[str, Any]) -> dict[str, Any]:
    total = int((asyncio.get_running_loop().time() - started) * 1e9)
    return {
        "model": model, "created_at": now_rfc3339(), **extra, "done": True,
        "done_reason": done.reason, "total_duration": total, "load_duration": done.load_ns,
        "prompt_eval_count": done.prompt_eval_count, "prompt_eval_duration": done.prompt_eval_ns,
        "eval_count": done.eval_count, "eval_duration": done.eval_ns,
    }


async def _respond(
    request: Request, stream: AsyncGenerator[Parsed | Done, None], model: str, streaming: bool,
    shape: Callable[[Parsed], dict[str, Any]],
) -> Response:
    """Await the first item before answering, so a failure to start is a real HTTP error."""
    started = asyncio.get_running_loop().time()
    if not streaming:
        whole, done = await unless_disconnected(request, inference.gather(stream))
        return JSONResponse(_final(model, done, started, shape(whole)))
    first = await anext(stream)

    async def lines() -> AsyncIterator[bytes]:
        item: Parsed | Done | None = first
        try:
            while item is not None:
                if isinstance(item, Done):
                    yield _line(_final(model, item, started, shape(Parsed())))
                    return
                yield _line({"model": model, "created_at": now_rfc3339(), **shape(item),
                             "done": False})
                item = await anext(stream)
        except (RunnerError, StopAsyncIteration) as exc:
            yield _line({"error": str(exc) or "the stream ended early"})
        finally:
            await stream.aclose()

    return StreamingResponse(lines(), media_type=NDJSON)


def _generate_shape(p: Parsed) -> dict[str, Any]:
    out: dict[str, Any] = {"response": p.content}
    if p.thinking:
        out["thinking"] = p.thinking
    if p.logprobs:
        out["logprobs"] = p.logprobs
    return out


def _chat_shape(p: Parsed) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": p.content}
    if p.thinking:
        message["thinking"] = p.thinking
    if p.tool_calls:
        message["tool_calls"] = p.tool_calls
    return {"message": message, **({"logprobs": p.logprobs} if p.logprobs else {})}


def _line(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"


async def _load_response(request: Request, ref: ModelRef, keep_alive: Any,
                         extra: dict[str, Any]) -> Response:
    reason = await inference.load_only(
        inference.scheduler(request), ref, inference.keep_alive_seconds(keep_alive)
    )
    return JSONResponse({"model": str(ref.name), "created_at": now_rfc3339(), **extra,
                         "done": True, "done_reason": reason})


@router.post("/generate", responses=doc(GenerateResponse, streams=True))
async def generate(request: Request, body: GenerateRequest) -> Response:
    async def run() -> Response:
        ref = inference.resolve_model(request, body.model)
        if body.images:
            raise BadRequest(f"model '{ref.name}' does not support images")
        if not body.prompt and not body.suffix:
            return await _load_response(request, ref, body.keep_alive, {"response": ""})
        if body.raw and (body.template or body.system or body.context):
            raise BadRequest("raw mode does not support template, system, or context")
        req = inference.build_request(ref, "", body.options, body.keep_alive, body.format,
                                      logprobs=body.logprobs, top_logprobs=body.top_logprobs)
        if body.raw:
            req.prompt = body.prompt
        else:
            messages = []
            if body.system:
                messages.append({"role": "system", "content": body.system})
            messages.append({"role": "user", "content": body.prompt})
            req.prompt = await inference.render_chat(ref, messages, template=body.template,
                                                     think=body.think)
        parser = inference.output_parser(ref, req.prompt, None, body.think)
        stream = inference.parsed(inference.generate(inference.scheduler(request), ref, req), parser)
        return await _respond(request, stream, body.model, body.stream, _generate_shape)

    return await _guarded(run)


@router.post("/chat", responses=doc(ChatResponse, streams=True))
async def chat(request: Request, body: ChatRequest) -> Response:
    async def run() -> Response:
        ref = inference.resolve_model(request, body.model)
        if not body.messages:
            return await _load_response(
                request, ref, body.keep_alive, {"message": {"role": "assistant", "content": ""}}
            )
        if any(m.images for m in body.messages):
            raise BadRequest(f"model '{ref.name}' does not support images")
        messages = [_message_dict(m.model_dump(exclude_none=True)) for m in body.messages]
        req = inference.build_request(ref, "", body.options, body.keep_alive, body.format,
                                      logprobs=body.logprobs, top_logprobs=body.top_logprobs)
        req.prompt = await inference.render_chat(ref, messages, tools=body.tools, think=body.think,
                                                 history=True)
        parser = inference.output_parser(ref, req.prompt, body.tools, body.think)
        stream = inference.parsed(inference.generate(inference.scheduler(request), ref, req), parser)
        return await _respond(request, stream, body.model, body.stream, _chat_shape)

    return await _guarded(run)


@router.post("/embed", responses=doc(EmbedResponse))
async def embed(request: Request, body: EmbedRequest) -> Response:
    async def run() -> Response:
        ref = inference.resolve_model(request, body.model)
        texts = [body.input] if isinstance(body.input, str) else list(body.input)
        texts = [t for t in texts if t] if isinstance(body.input, str) else texts
        started = asyncio.get_running_loop().time()
        vectors, count, load_ns = await inference.embed(
            inference.scheduler(request), ref, texts, body.truncate, body.dimensions, body.options,
            body.keep_alive)
        total = int((asyncio.get_running_loop().time() - started) * 1e9)
        return JSONResponse({"model": body.model, "embeddings": vectors, "total_duration": total,
                             "load_duration": load_ns, "prompt_eval_count": count})

    return await _guarded(run)


@router.post("/embeddings", responses=doc(EmbeddingsResponse))
async def embeddings(request: Request, body: EmbeddingsRequest) -> Response:
    async def run() -> Response:
        ref = inference.resolve_model(request, body.model)
        texts = [body.prompt] if body.prompt else []
        vectors, _, _ = await inference.embed(inference.scheduler(request), ref, texts, True, None,
                                              body.options, body.keep_alive)
        return JSONResponse({"embedding": vectors[0] if vectors else []})

    return await _guarded(run)


def _message_dict(m: dict[str, Any]) -> dict[str, Any]:
    m["role"] = str(m.get("role", "user")).lower()
    for call in m.get("tool_calls") or []:
        args = call.get("function", {}).get("arguments")
        if isinstance(args, dict):
            call["function"]["arguments"] = args  # templates take the object
    return m


# -- models ---------------------------------------------------------------------------------

def _model_entry(ref_name: Name, ref: ModelRef) -> dict[str, Any]:
    return {
        "name": str(ref_name), "model": str(ref_name),
        "modified_at": ref.manifest.modified_at.isoformat().replace("+00:00", "Z"),
        "size": ref.manifest.size, "digest": ref.id, "details": ref.details,
    }


@router.api_route("/tags", methods=["GET", "HEAD"], responses=doc(ListResponse))
async def tags(request: Request) -> Response:
    store = request.app.state.store
    models = [_model_entry(name, ModelRef(name, manifest, store))
              for name, manifest in store.entries()]
    return JSONResponse({"models": models})


@router.post("/show", responses=doc(ShowResponse))
async def show(request: Request, body: ModelRequest) -> Response:
    async def run() -> Response:
        ref = inference.resolve_model(request, body.target)
        params = ref.params
        return JSONResponse({
            "license": ref.license or "",
            "modelfile": _modelfile(ref),
            "parameters": _parameters_text(params),
            "template": ref.template or "",
            "system": ref.system or "",
            "details": ref.details,
            "messages": ref.messages,
            "model_info": ref.config.get("model_info") or {},
            "capabilities": ref.capabilities,
            "modified_at": ref.manifest.modified_at.isoformat().replace("+00:00", "Z"),
        })

    return await _guarded(run)


def _parameters_text(params: dict[str, Any]) -> str:
    rows = []
    for key, value in params.items():
        for v in value if isinstance(value, list) else [value]:
            rows.append(f"{key:<30} {json.dumps(v) if isinstance(v, str) else v}")
    return "\n".join(rows)


def _modelfile(ref: ModelRef) -> str:
    lines = [f"# Modelfile generated by \"roost show\"\nFROM {ref.weights}"]
    if ref.template:
        lines.append(f'TEMPLATE """{ref.template}"""')
    if ref.system:
        lines.append(f'SYSTEM """{ref.system}"""')
    for row in _parameters_text(ref.params).splitlines():
        lines.append(f"PARAMETER {row}")
    return "\n".join(lines) + "\n"


@router.get("/ps", responses=doc(ProcessResponse))
async def ps(request: Request) -> Response:
    models = []
    for loaded in inference.scheduler(request).loaded.values():
        expires = loaded.expires_at
        until = (datetime.fromtimestamp(expires, UTC) if expires != float("inf")
                 else datetime(2318, 1, 1, tzinfo=UTC))
        models.append({
            **_model_entry(loaded.ref.name, loaded.ref),
            "size": loaded.runner.size,
            "expires_at": until.isoformat().replace("+00:00", "Z"),
            "size_vram": loaded.runner.size if loaded.runner.gpu_layers else 0,
            "context_length": loaded.num_ctx,
        })
    return JSONResponse({"models": models})


@router.api_route("/version", methods=["GET", "HEAD"], responses=doc(VersionResponse))
async def version() -> Response:
    # `server` tells Roost's CLI apart from an Ollama server on the same port.
    return JSONResponse({"version": __version__, "server": "roost"})


@router.delete("/delete")
async def delete(request: Request, body: ModelRequest) -> Response:
    async def run() -> Response:
        ref = inference.resolve_model(request, body.target)
        await inference.scheduler(request).unload(ref)
        request.app.state.store.delete(ref.name)
        return JSONResponse({})

    return await _guarded(run)


@router.post("/pull", responses=doc(ProgressResponse, streams=True))
async def pull_model(request: Request, body: ModelRequest) -> Response:
    try:
        name = Name.parse(body.target)
    except InvalidName as exc:
        return error(400, str(exc))
    store = request.app.state.store
    if catalog.find(name) is not None:
        return await _progress_response(lambda report: pull(store, name, report),
                                        body.stream)
    if name.host == DEFAULT_HOST:
        return error(404, _not_found(body.target))
    return await _progress_response(
        lambda report: transfer.pull(store, name, body.insecure, report), body.stream)


def _not_found(target: str) -> str:
    """Ollama's words, then the catalog's names close to what was typed."""
    message = f"pull model manifest: file does not exist: model '{target}' not found"
    close = catalog.close_names(target)
    return f"{message}; did you mean {' or '.join(close)}?" if close else message


@router.post("/push", responses=doc(ProgressResponse, streams=True))
async def push_model(request: Request, body: ModelRequest) -> Response:
    try:
        name = Name.parse(body.target)
    except InvalidName as exc:
        return error(400, str(exc))
    store = request.app.state.store
    if store.get(name) is None:
        return error(404, f"model '{body.target}' not found")
    return await _progress_response(
        lambda report: transfer.push(store, name, body.insecure, report), body.stream)


async def _progress_response(work: Callable[[Callable[[dict[str, Any]], None]], None],
                             stream: bool) -> Response:
    """Run a store operation in a thread; stream its status events as NDJSON (or the last)."""
    queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
    loop = asyncio.get_running_loop()

    def report(event: dict[str, Any]) -> None:
        loop.call_soon_threadsafe(queue.put_nowait, event)

    def run() -> None:
        try:
            work(report)
        except (NotFound, InvalidName) as exc:
            report({"error": str(exc), "_status": 404 if isinstance(exc, NotFound) else 400})
        except transfer.RegistryError as exc:
            report({"error": str(exc), "_status": exc.status})
        except (CreateError, ModelNotFound, catalog.PartsMissing, StoreError, OSError,
                ValueError) as exc:
            report({"error": str(exc), "_status": 400 if isinstance(exc, CreateError) else 500})
        finally:
            loop.call_soon_threadsafe(queue.put_nowait, None)

    task = loop.run_in_executor(None, run)

    async def events() -> AsyncIterator[dict[str, Any]]:
        while (event := await queue.get()) is not None:
            yield event
        await task

    if not stream:
        last: dict[str, Any] = {}
        async for event in events():
            last = event
        return JSONResponse({k: v for k, v in last.items() if k != "_status"},
                            status_code=int(last.get("_status", 200)))

    async def lines() -> AsyncIterator[bytes]:
        async for event in events():
            yield _line({k: v for k, v in event.items() if k != "_status"})

    return StreamingResponse(lines(), media_type=NDJSON)


@router.post("/create", responses=doc(ProgressResponse, streams=True))
async def create_model(request: Request, body: CreateRequest) -> Response:
    if body.adapters or body.quantize:
        return error(400, "adapters and quantize are not supported yet")
    try:
        Name.parse(body.model)
    except InvalidName as exc:
        return error(400, str(exc))
    spec = Spec(name=body.model, base=body.from_, files=body.files or {},
                template=body.template, system=body.system, license=body.license,
                parameters=body.parameters or {}, messages=body.messages)
    store = request.app.state.store
    return await _progress_response(lambda report: create(store, spec, report),
                                    body.stream)


@router.post("/copy")
async def copy_model(request: Request, body: CopyRequest) -> Response:
    async def run() -> Response:
        try:
            copy(request.app.state.store, body.source, body.destination)
        except InvalidName as exc:
            raise BadRequest(str(exc)) from exc
        return JSONResponse({})

    return await _guarded(run)


@router.head("/blobs/{digest}")
async def blob_exists(request: Request, digest: str) -> Response:
    try:
        found = request.app.state.store.has_blob(digest)
    except StoreError as exc:
        return error(400, str(exc))
    return Response(status_code=200 if found else 404)


@router.post("/blobs/{digest}", status_code=201)
async def blob_upload(request: Request, digest: str) -> Response:
    """Stream the body into the store; the digest is verified before the blob is kept."""
    try:
        parse_digest(digest)
    except StoreError as exc:
        return error(400, str(exc))
    store = request.app.state.store
    if store.has_blob(digest):
        return Response(status_code=201)
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=16)

    def chunks() -> Any:
        while (chunk := asyncio.run_coroutine_threadsafe(queue.get(), loop).result()) is not None:
            yield chunk

    writer = loop.run_in_executor(None, lambda: store.write_blob(chunks(), digest))

    async def feed(item: bytes | None) -> bool:
        """Hand one chunk to the writer, unless the writer has already failed (disk full)."""
        put = asyncio.ensure_future(queue.put(item))
        await asyncio.wait({put, writer}, return_when=asyncio.FIRST_COMPLETED)
        if not put.done():
            put.cancel()
        return put.done() and not put.cancelled()

    try:
        async for chunk in request.stream():
            if chunk and not await feed(chunk):
                break
    finally:
        if not writer.done():
            await feed(None)
    try:
        await writer
    except DigestMismatch as exc:
        return error(400, str(exc))
    except OSError as exc:
        return error(_storage_status(exc), f"could not store the blob: {exc.strerror or exc}")
    return Response(status_code=201)


def _storage_status(exc: OSError) -> int:
    """507 when the disk (or a file size limit) is full, 500 for any other write failure."""
    return 507 if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG) else 500
