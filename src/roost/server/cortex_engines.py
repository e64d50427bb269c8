"""Cortex's engines and configs routes: remote engines and the keys that reach them.

`llama-cpp` is the local engine; any other is an OpenAI-compatible endpoint that serves
`MODEL:NAME`. Keys are kept in the server's database (mode 0600) and never leave it whole:
every answer shows them as `sk-…1234`, and the server logs no request bodies.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import Field

from roost.api.responses import CortexError, errors
from roost.api.wire import Wire
from roost.server.cortex import error
from roost.threads.store import NotFound, Store

router = APIRouter(tags=["cortex"], responses=errors(CortexError))
LOCAL = "llama-cpp"
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")
# Settings a config may hold besides an engine's key (ENGINE_api_key).
KNOWN_CONFIGS = frozenset({"huggingface_token", "github_token"})


class EngineCreate(Wire):
    name: str = Field(min_length=1)
    url: str = Field(min_length=1)
    api_key: str = ""


def mask(secret: str) -> str:
    """Enough to tell two keys apart, never enough to use one."""
    if not secret:
        return ""
    return f"{secret[:3]}…{secret[-4:]}" if len(secret) > 10 else "…"


def check_config_key(key: str) -> None:
    if key in KNOWN_CONFIGS or (key.endswith("_api_key") and _NAME.match(key[: -len("_api_key")])):
        return
    raise ValueError(f"unknown config key '{key}': use ENGINE_api_key (e.g. openai_api_key), "
                     f"{', '.join(sorted(KNOWN_CONFIGS))}")


def _db(request: Request) -> Store:
    return request.app.state.db  # type: ignore[no-any-return]


async def _engines(request: Request) -> list[dict[str, Any]]:
    engines = await asyncio.to_thread(_db(request).engines)
    data: list[dict[str, Any]] = [{"name": LOCAL, "type": "local", "url": None, "api_key": ""}]
    return data + [{"name": e.name, "type": "remote", "url": e.url, "api_key": mask(e.api_key)}
                   for e in engines]


@router.get("/v1/engines")
async def list_engines(request: Request) -> Response:
    return JSONResponse({"object": "list", "data": await _engines(request)})


@router.get("/v1/engines/{name}")
async def get_engine(request: Request, name: str) -> Response:
    """Cortex answers a list (an engine's installed variants): here, the one engine."""
    found = [e for e in await _engines(request) if e["name"] == name]
    return JSONResponse(found) if found else error(404, f"engine '{name}' not found")


@router.post("/v1/engines")
async def add_engine(request: Request, body: EngineCreate) -> Response:
    if not _NAME.match(body.name) or body.name == LOCAL:
        return error(400, f"invalid engine name '{body.name}': lowercase letters, digits, - and _")
    if not body.url.startswith(("http://", "https://")):
        return error(400, f"invalid engine url '{body.url}': it must start with http:// or https://")
    engine = await asyncio.to_thread(_db(request).put_engine, body.name, body.url.rstrip("/"),
                                     body.api_key)
    return JSONResponse({"name": engine.name, "type": "remote", "url": engine.url,
                         "api_key": mask(engine.api_key)})


@router.delete("/v1/engines/{name}")
async def delete_engine(request: Request, name: str) -> Response:
    try:
        await asyncio.to_thread(_db(request).delete_engine, name)
    except NotFound as exc:
        return error(404, str(exc))
    return JSONResponse({"name": name, "deleted": True})


@router.get("/v1/configs")
async def get_configs(request: Request) -> Response:
    configs = await asyncio.to_thread(_db(request).configs)
    return JSONResponse({k: mask(v) for k, v in configs.items()})


@router.patch("/v1/configs")
async def patch_configs(request: Request, body: dict[str, str]) -> Response:
    try:
        for key in body:
            check_config_key(key)
    except ValueError as exc:
        return error(400, str(exc))
    for key, value in body.items():
        await asyncio.to_thread(_db(request).set_config, key, value)
    configs = await asyncio.to_thread(_db(request).configs)
    return JSONResponse({k: mask(v) for k, v in configs.items()})
