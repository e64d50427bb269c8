"""Cortex's thread API (`/v1/threads`, OpenAI Assistants-style) and `/healthz`.

Threads and messages live in the server's SQLite store (roost.threads.store); the routes
only translate its rows to Cortex's objects. Errors take Cortex's shape, `{"message": ...}`,
which app.py exempts from the OpenAI error shape of other `/v1/` routes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Literal, TypeVar

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import Field

from roost.api.responses import CortexError, errors
from roost.api.wire import Wire
from roost.threads.store import Message, NotFound, Page, Store, Thread

router = APIRouter(tags=["cortex"], responses=errors(CortexError))
# The routes with Cortex's error shape, {"message": ...}.
PREFIXES = ("/v1/threads", "/v1/engines", "/v1/configs", "/v1/presets", "/v1/models/pull",
            "/v1/models/start", "/v1/models/stop", "/v1/models/status/", "/healthz")
T = TypeVar("T")


_Wire = Wire  # unknown fields kept, `null` as absent


class ThreadCreate(_Wire):
    metadata: dict[str, Any] | None = None
    title: str | None = None
    model: str | None = None


class ThreadUpdate(ThreadCreate):
    pass


class MessageCreate(_Wire):
    role: Literal["user", "assistant", "system", "tool"]
    content: str | list[dict[str, Any]] = Field(max_length=1 << 20)
    metadata: dict[str, Any] | None = None
    # Roost's: an answer cut off (Ctrl+C, a dropped connection) is kept, marked incomplete.
    status: Literal["completed", "incomplete"] = "completed"


class MessageUpdate(_Wire):
    content: str | None = None
    metadata: dict[str, Any] | None = None


def error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"message": message}, status_code=status)


def _store(request: Request) -> Store:
    return request.app.state.db  # type: ignore[no-any-return]


async def _call(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    return await asyncio.to_thread(fn, *args, **kwargs)


def thread_object(t: Thread) -> dict[str, Any]:
    title = t.title or str(t.metadata.get("title", ""))
    return {"id": t.id, "object": "thread", "created_at": t.created_at, "updated_at": t.updated_at,
            "title": title, "model": t.model, "metadata": {**t.metadata, "title": title},
            "message_count": t.message_count, "tool_resources": None}


def message_object(m: Message) -> dict[str, Any]:
    return {"id": m.id, "object": "thread.message", "created_at": m.created_at,
            "completed_at": m.completed_at, "thread_id": m.thread_id, "role": m.role,
            "content": [{"type": "text", "text": {"value": m.content, "annotations": []}}],
            "status": m.status, "metadata": m.metadata, "attachments": [],
            "incomplete_at": None if m.status == "completed" else m.created_at,
            "incomplete_details": None, "assistant_id": None, "run_id": None}


def _list(page: Page, encode: Callable[[Any], dict[str, Any]]) -> dict[str, Any]:
    data = [encode(item) for item in page.items]
    return {"object": "list", "data": data, "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None, "has_more": page.has_more}


def _text(content: str | list[dict[str, Any]]) -> str:
    """Cortex and OpenAI clients send a string, or parts of which the text ones count."""
    if isinstance(content, str):
        return content
    parts = []
    for part in content:
        text = part.get("text") if isinstance(part, dict) and part.get("type") == "text" else None
        parts.append(str(text.get("value", "")) if isinstance(text, dict) else str(text or ""))
    return "".join(parts)


@router.get("/healthz")
async def healthz() -> Response:
    return JSONResponse({})


@router.post("/v1/threads")
async def create_thread(request: Request, body: ThreadCreate) -> Response:
    meta = body.metadata or {}
    thread = await _call(_store(request).create_thread, body.title or str(meta.get("title", "")),
                         body.model or "", meta)
    return JSONResponse(thread_object(thread))


@router.get("/v1/threads")
async def list_threads(request: Request, limit: int = Query(20, ge=1, le=100),
                       order: Literal["asc", "desc"] = "desc", after: str | None = None,
                       before: str | None = None) -> Response:
    page = await _call(_store(request).threads, limit, order, after, before)
    return JSONResponse(_list(page, thread_object))


@router.get("/v1/threads/{thread_id}")
async def get_thread(request: Request, thread_id: str) -> Response:
    try:
        return JSONResponse(thread_object(await _call(_store(request).thread, thread_id)))
    except NotFound as exc:
        return error(404, str(exc))


@router.patch("/v1/threads/{thread_id}")
async def update_thread(request: Request, thread_id: str, body: ThreadUpdate) -> Response:
    title = body.title if body.title is not None else (body.metadata or {}).get("title")
    try:
        thread = await _call(_store(request).update_thread, thread_id, title, body.model,
                             body.metadata)
    except NotFound as exc:
        return error(404, str(exc))
    return JSONResponse(thread_object(thread))


@router.delete("/v1/threads/{thread_id}")
async def delete_thread(request: Request, thread_id: str) -> Response:
    try:
        await _call(_store(request).delete_thread, thread_id)
    except NotFound as exc:
        return error(404, str(exc))
    return JSONResponse({"id": thread_id, "object": "thread.deleted", "deleted": True})


@router.post("/v1/threads/{thread_id}/messages")
async def create_message(request: Request, thread_id: str, body: MessageCreate) -> Response:
    try:
        msg = await _call(_store(request).add_message, thread_id, body.role, _text(body.content),
                          body.status, body.metadata)
    except NotFound as exc:
        return error(404, str(exc))
    return JSONResponse(message_object(msg))


@router.get("/v1/threads/{thread_id}/messages")
async def list_messages(request: Request, thread_id: str, limit: int = Query(20, ge=1, le=100),
                        order: Literal["asc", "desc"] = "desc", after: str | None = None,
                        before: str | None = None) -> Response:
    try:
        page = await _call(_store(request).messages, thread_id, limit, order, after, before)
    except NotFound as exc:
        return error(404, str(exc))
    return JSONResponse(_list(page, message_object))


@router.get("/v1/threads/{thread_id}/messages/{message_id}")
async def get_message(request: Request, thread_id: str, message_id: str) -> Response:
    try:
        return JSONResponse(message_object(await _call(_store(request).message, thread_id, message_id)))
    except NotFound as exc:
        return error(404, str(exc))


@router.patch("/v1/threads/{thread_id}/messages/{message_id}")
async def update_message(request: Request, thread_id: str, message_id: str,
                         body: MessageUpdate) -> Response:
    try:
        msg = await _call(_store(request).update_message, thread_id, message_id, body.content,
                          body.metadata)
    except NotFound as exc:
        return error(404, str(exc))
    return JSONResponse(message_object(msg))


@router.delete("/v1/threads/{thread_id}/messages/{message_id}")
async def delete_message(request: Request, thread_id: str, message_id: str) -> Response:
    try:
        await _call(_store(request).delete_message, thread_id, message_id)
    except NotFound as exc:
        return error(404, str(exc))
    return JSONResponse({"id": message_id, "object": "thread.message.deleted", "deleted": True})
