"""Presets (`/v1/presets`): a name for a system prompt plus generation options.

Cortex keeps presets as YAML files beside its data; Roost keeps them in the server's
database, behind this API, so the CLI, scripts and the chat page share them. Options are
checked as a request's are, so a preset can never carry a value a request could not. The
routes take any path after /v1/presets/, so a name with a `/` is a 400 naming the rule, not a
404 that reads like a missing preset.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict

from roost import preset_names
from roost.api.responses import CortexError, errors
from roost.core import OptionError, check_options
from roost.server.cortex import error
from roost.threads.store import NotFound, Preset, Store

router = APIRouter(prefix="/v1/presets", tags=["presets"], responses=errors(CortexError))


class PresetBody(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True)
    system: str = ""
    options: dict[str, Any] = {}


def preset_object(p: Preset) -> dict[str, Any]:
    return {"name": p.name, "object": "preset", "system": p.system, "options": p.options,
            "updated_at": p.updated_at}


def _db(request: Request) -> Store:
    return request.app.state.db  # type: ignore[no-any-return]


@router.get("")
async def list_presets(request: Request) -> Response:
    presets = await asyncio.to_thread(_db(request).presets)
    return JSONResponse({"object": "list", "data": [preset_object(p) for p in presets]})


@router.get("/{name:path}")
async def get_preset(request: Request, name: str) -> Response:
    if why := preset_names.problem(name):
        return error(400, why)
    try:
        return JSONResponse(preset_object(await asyncio.to_thread(_db(request).preset, name)))
    except NotFound as exc:
        return error(404, str(exc))


@router.put("/{name:path}")
async def put_preset(request: Request, name: str, body: PresetBody) -> Response:
    if why := preset_names.problem(name):
        return error(400, why)
    try:
        check_options(body.options)
    except OptionError as exc:
        return error(400, str(exc))
    preset = await asyncio.to_thread(_db(request).put_preset, name, body.system, body.options)
    return JSONResponse(preset_object(preset))


@router.delete("/{name:path}")
async def delete_preset(request: Request, name: str) -> Response:
    if why := preset_names.problem(name):
        return error(400, why)
    try:
        await asyncio.to_thread(_db(request).delete_preset, name)
    except NotFound as exc:
        return error(404, str(exc))
    return JSONResponse({"name": name, "deleted": True})
