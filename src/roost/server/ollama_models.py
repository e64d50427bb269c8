"""Ollama's model routes (`/api/tags`, `show`, `ps`, `pull`, `push`, `create`, `copy`,
`delete`, `blobs`, `version`): the store and the scheduler, in Ollama's shapes.

Long operations (pull, push, create) run in a thread and stream Ollama's progress events
as NDJSON, or answer with the last one when the client asks for no stream.
"""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import threading
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from roost import __version__
from roost.api.responses import (
    ErrorResponse,
    LinkResponse,
    ListResponse,
    ProcessResponse,
    ProgressResponse,
    ShowResponse,
    VersionResponse,
    doc,
    errors,
)
from roost.api.types import CopyRequest, CreateRequest, LinkRequest, ModelRequest
from roost.models import catalog, gguf_check, gguf_meta, huggingface, link, modelfile, transfer
from roost.models.create import CreateError, Spec, copy, create
from roost.models.create import check as check_create
from roost.models.names import DEFAULT_HOST, InvalidName, Name
from roost.models.pull import ModelNotFound, pull, pull_hub
from roost.models.resolve import ModelRef, NotFound
from roost.models.store import (
    Cancelled,
    DigestMismatch,
    DiskFull,
    Store,
    StoreError,
    parse_digest,
    wire_digest,
)
from roost.server import engines, inference
from roost.server.inference import BadRequest
from roost.server.ollama import NDJSON, error, guarded, ndjson_line
from roost.server.security import is_loopback

router = APIRouter(prefix="/api", responses=errors(ErrorResponse))
log = logging.getLogger("roost.server")


def _model_entry(ref_name: Name, ref: ModelRef) -> dict[str, Any]:
    return {
        "name": str(ref_name), "model": str(ref_name),
        "modified_at": ref.manifest.modified_at.isoformat().replace("+00:00", "Z"),
        "size": ref.manifest.size, "digest": ref.id, "details": ref.details,
    }


@router.get("/tags", responses=doc(ListResponse))
@router.head("/tags", include_in_schema=False)
async def tags(request: Request) -> Response:
    store = request.app.state.store
    models = [_list_entry(name, ModelRef(name, manifest, store))
              for name, manifest in store.entries()]
    return JSONResponse({"models": models})


def _list_entry(name: Name, ref: ModelRef) -> dict[str, Any]:
    """As Ollama lists a model: its capabilities, and its trained context in `details`."""
    entry = _model_entry(name, ref)
    trained = ref.config.get("context_length")
    if trained:
        entry["details"] = {**entry["details"], "context_length": int(trained)}
    entry["capabilities"] = ref.capabilities
    return entry


@router.post("/show", responses=doc(ShowResponse))
async def show(request: Request, body: ModelRequest) -> Response:
    async def run() -> Response:
        target = await engines.remote_target(request, body.target)
        if target is not None:
            return JSONResponse(_remote_show(target[0].name, target[1]))
        ref = inference.resolve_model(request, body.target)
        params = ref.params
        verbose = await asyncio.to_thread(_verbose_info, ref) if body.verbose else {}
        return JSONResponse({
            "license": ref.license or "",
            "modelfile": _modelfile(ref),
            "parameters": _parameters_text(params),
            "template": ref.template or "",
            "system": ref.system or "",
            "details": ref.details,
            "messages": ref.messages,
            "model_info": {**(ref.config.get("model_info") or {}), **verbose.get("arrays", {})},
            "capabilities": ref.capabilities,
            "modified_at": ref.manifest.modified_at.isoformat().replace("+00:00", "Z"),
            **({"tensors": verbose["tensors"]} if verbose else {}),
            **{key: ref.config[key] for key in ("parser", "requires") if ref.config.get(key)},
        })

    return await guarded(run)


def _verbose_info(ref: ModelRef) -> dict[str, Any]:
    """What `verbose` adds, read from the weights' header: the arrays the stored metadata
    leaves empty (vocabulary, merges, token types) and every tensor's name, type and shape."""
    try:
        meta, _ = gguf_meta.read(ref.weights_path, want_tokens=False, whole=True)
    except (OSError, gguf_meta.GGUFError) as exc:
        raise BadRequest(f"model '{ref.name}': its weights cannot be read: {exc}") from exc
    arrays = {k: v for k, v in meta.kv.items() if isinstance(v, list)}
    tensors = [{"name": t.name, "type": t.type_name, "shape": list(t.shape)} for t in meta.tensors]
    return {"arrays": arrays, "tensors": tensors}


def _remote_show(engine: str, model: str) -> dict[str, Any]:
    """What is known of a model on a remote engine: only that it chats (and may call tools)."""
    return {"license": "", "modelfile": "", "parameters": "", "template": "", "system": "",
            "details": {"format": "remote", "family": engine, "families": [engine],
                        "parameter_size": "", "quantization_level": "", "parent_model": model},
            "messages": [], "model_info": {"general.architecture": engine},
            "capabilities": ["completion", "tools"], "remote_engine": engine, "remote_model": model,
            "modified_at": datetime.now(UTC).isoformat().replace("+00:00", "Z")}


def _parameters_text(params: dict[str, Any]) -> str:
    rows = []
    for key, value in params.items():
        for v in value if isinstance(value, list) else [value]:
            rows.append(f"{key:<30} {json.dumps(v) if isinstance(v, str) else v}")
    return "\n".join(rows)


def _modelfile(ref: ModelRef) -> str:
    """A Modelfile that recreates the model: `roost create` of it gives the same layers."""
    return modelfile.render(str(ref.weights_path), ref.template, ref.system, ref.params,
                            [str(path) for path in ref.adapter_paths], ref.messages, ref.license,
                            ref.config.get("requires"))


@router.get("/ps", responses=doc(ProcessResponse))
async def ps(request: Request) -> Response:
    models = []
    runners = inference.scheduler(request).loaded.values()
    for loaded in sorted(runners, key=lambda r: r.expires_at, reverse=True):  # as Ollama
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


@router.get("/version", responses=doc(VersionResponse))
@router.head("/version", include_in_schema=False)
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

    return await guarded(run)


@router.post("/pull", responses=doc(ProgressResponse, streams=True))
async def pull_model(request: Request, body: ModelRequest) -> Response:
    try:
        name = Name.parse(body.target)
    except InvalidName as exc:
        return error(400, str(exc))
    store = request.app.state.store
    if catalog.find(name) is not None:
        gone = threading.Event()  # a download from the Hub stops when its last client leaves
        return await _progress_response(lambda report: pull(store, name, _until(gone, report)),
                                        body.stream, gone)
    if huggingface.is_hub_name(name):
        try:  # which file, before the stream: a missing repo or quant is a plain 4xx
            file = await asyncio.to_thread(huggingface.resolve, name)
        except huggingface.HubError as exc:
            return error(exc.status, str(exc))
        gone = threading.Event()
        return await _progress_response(
            lambda report: pull_hub(store, name, _until(gone, report), file), body.stream, gone)
    try:  # the manifest before the stream: a missing model or a refusal is a plain 4xx
        remote = await asyncio.to_thread(transfer.fetch_manifest, name, body.insecure)
    except transfer.RegistryError as exc:
        if name.host == DEFAULT_HOST and exc.status in (404, 502):
            return error(404, _not_found(body.target, None if exc.status == 404 else str(exc)))
        return error(exc.status, str(exc))
    gone = threading.Event()  # the download stops when its last client leaves
    return await _progress_response(
        lambda report: transfer.pull(store, name, body.insecure, _until(gone, report), remote),
        body.stream, gone)


def _until(gone: threading.Event, report: Callable[[dict[str, Any]], None]
           ) -> Callable[[dict[str, Any]], None]:
    """A report that raises once the client has gone, so a shared download loses a waiter."""
    def call(event: dict[str, Any]) -> None:
        if gone.is_set():
            raise Cancelled("the client went away")
        report(event)

    return call


def _not_found(target: str, unreachable: str | None = None) -> str:
    """Ollama's words (or why the registry could not say), then the catalog's close names."""
    message = f"pull model manifest: file does not exist: model '{target}' not found"
    if unreachable:
        message = f"pull model manifest: model '{target}' not found in the catalog, and {unreachable}"
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
                             stream: bool, gone: threading.Event | None = None) -> Response:
    """Run a store operation in a thread; stream its status events as NDJSON (or the last).

    `gone` is set when the client leaves before the work ends, for work that can stop early.
    """
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
        except DiskFull as exc:
            report({"error": str(exc), "_status": 507})
        except (CreateError, ModelNotFound, catalog.PartsMissing, StoreError, OSError,
                ValueError) as exc:
            report({"error": str(exc), "_status": 400 if isinstance(exc, CreateError) else 500})
        except Exception as exc:  # a bug: the client still gets an error line, never a silent end
            log.exception("store operation failed")
            report({"error": f"internal error: {exc}", "_status": 500})
        finally:
            loop.call_soon_threadsafe(queue.put_nowait, None)

    task = loop.run_in_executor(None, run)

    async def events() -> AsyncIterator[dict[str, Any]]:
        try:
            while (event := await queue.get()) is not None:
                yield event
            await task
        finally:
            if gone is not None and not task.done():
                gone.set()

    if not stream:
        last: dict[str, Any] = {}
        async for event in events():
            last = event
        return JSONResponse({k: v for k, v in last.items() if k != "_status"},
                            status_code=int(last.get("_status", 200)))

    async def lines() -> AsyncIterator[bytes]:
        async for event in events():
            yield ndjson_line({k: v for k, v in event.items() if k != "_status"})

    return StreamingResponse(lines(), media_type=NDJSON)


@router.post("/create", responses=doc(ProgressResponse, streams=True))
async def create_model(request: Request, body: CreateRequest) -> Response:
    gone = threading.Event()  # a quantize stops when its client leaves
    spec = Spec(name=body.model, base=body.from_, files=body.files or {},
                template=body.template, system=body.system, license=body.license,
                parameters=body.parameters or {}, messages=body.messages,
                adapters=body.adapters or {}, quantize=body.quantize, requires=body.requires,
                parser=body.parser,
                cancelled=gone.is_set)
    store = request.app.state.store
    try:  # before the stream starts, so bad input is a real 400 (404: no base), not an error line
        plan = await asyncio.to_thread(check_create, store, spec)
    except (InvalidName, CreateError) as exc:
        return error(400, str(exc))
    except NotFound as exc:
        return error(404, str(exc))
    return await _progress_response(lambda report: create(store, spec, report, plan),
                                    body.stream, gone)


@router.post("/copy")
async def copy_model(request: Request, body: CopyRequest) -> Response:
    async def run() -> Response:
        try:
            copy(request.app.state.store, body.source, body.destination)
        except InvalidName as exc:
            raise BadRequest(str(exc)) from exc
        return JSONResponse({})

    return await guarded(run)


@router.head("/blobs/{digest}")
async def blob_exists(request: Request, digest: str) -> Response:
    try:  # a linked file changed since it was linked is as good as missing: upload it again
        found = link.is_fresh(request.app.state.store, digest)
    except StoreError as exc:
        return error(400, str(exc))
    return Response(status_code=200 if found else 404)


@router.post("/blobs/{digest}/link", status_code=201,
             responses={201: {"model": LinkResponse}, 400: {"model": ErrorResponse},
                        403: {"model": ErrorResponse}, 507: {"model": ErrorResponse}})
async def blob_link(request: Request, digest: str, body: LinkRequest) -> Response:
    """Roost extension: make a file on the server's machine the blob `digest` without copying
    it (`roost create --link`). The server hashes the file and refuses it unless the digest
    matches and it is a sound GGUF; then it is hard-linked into the store when on the same
    filesystem, else recorded by path, size and modification time, and checked against them
    before every load. The path must be absolute and readable by the server."""
    if not is_loopback(request.client.host if request.client else ""):
        return error(403, "files are linked only for clients on the server's own machine")
    try:
        parse_digest(digest)
    except StoreError as exc:
        return error(400, str(exc))
    store = request.app.state.store
    if link.is_fresh(store, digest):
        return JSONResponse({"digest": wire_digest(digest), "link": "existing"}, status_code=201)
    try:
        kind = await asyncio.to_thread(link.link, store, digest, Path(body.path))
        await asyncio.to_thread(_refuse_bad_gguf, store, digest)
    except (link.LinkError, gguf_check.InvalidGGUF) as exc:
        return error(400, str(exc))
    except StoreError as exc:  # the record could not be written: the disk is full
        return error(507, str(exc))
    except OSError as exc:
        return error(_storage_status(exc), f"could not link the file: {exc.strerror or exc}")
    return JSONResponse({"digest": wire_digest(digest), "link": kind}, status_code=201)


@router.post("/blobs/{digest}", status_code=201)
async def blob_upload(request: Request, digest: str) -> Response:
    """Stream the body into the store; the digest is verified before the blob is kept, and a
    GGUF's structure right after (400, and not kept, when it is malformed)."""
    try:
        parse_digest(digest)
    except StoreError as exc:
        return error(400, str(exc))
    store = request.app.state.store
    if link.is_fresh(store, digest):  # a stale linked blob is replaced by the upload
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
        await asyncio.to_thread(_refuse_bad_gguf, store, digest)
    except (DigestMismatch, gguf_check.InvalidGGUF) as exc:
        return error(400, str(exc))
    except OSError as exc:
        return error(_storage_status(exc), f"could not store the blob: {exc.strerror or exc}")
    return Response(status_code=201)


def _refuse_bad_gguf(store: Store, digest: str) -> None:
    """A blob that says it is a GGUF must be a sound one: a malformed one is not kept, so no
    model can be made from it and no runner ever opens it."""
    path = store.blob_path(digest)
    try:
        gguf_check.check_upload(path)
    except gguf_check.InvalidGGUF:
        path.unlink(missing_ok=True)
        raise


def _storage_status(exc: OSError) -> int:
    """507 when the disk (or a file size limit) is full, 500 for any other write failure."""
    return 507 if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG) else 500
