"""Cortex's model routes, with the model named in the body: pull, start, stop, and delete;
and its status route.

They do what Ollama's routes do (and reuse them): a pull from the catalog or a registry,
a load that keeps the model for the default keep_alive, an unload, a delete. Answers and
errors take Cortex's `{"message": ...}` shape; DELETE /v1/models/{id} answers as OpenAI's.
"""

from __future__ import annotations

import json

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import Field

from roost.api.openai_types import OpenAIError
from roost.api.responses import CortexError, errors
from roost.api.types import ModelRequest
from roost.api.wire import Wire
from roost.models.names import InvalidName
from roost.models.resolve import NotFound
from roost.scheduler.scheduler import name_key
from roost.server import engines, inference, ollama_models
from roost.server.cortex import error

router = APIRouter(prefix="/v1/models", tags=["cortex"], responses=errors(CortexError))



class ModelBody(Wire):
    model: str = Field(min_length=1)
    ctx_len: int | None = Field(default=None, ge=1, le=1 << 20)


@router.post("/pull")
async def pull(request: Request, body: ModelBody) -> Response:
    answer = await ollama_models.pull_model(request, ModelRequest(model=body.model, stream=False))
    detail = json.loads(bytes(answer.body))
    if answer.status_code != 200:
        return error(answer.status_code, str(detail.get("error", "pull failed")))
    return JSONResponse({"message": f"Model '{body.model}' is pulled", "model": body.model})


@router.post("/start")
async def start(request: Request, body: ModelBody) -> Response:
    if await engines.remote_target(request, body.model) is not None:
        return JSONResponse({"message": f"Model '{body.model}' is served by its engine"})
    try:
        ref = inference.resolve_model(request, body.model)
        async with inference.scheduler(request).use(ref, body.ctx_len, None):
            pass
    except (NotFound, inference.BadRequest) as exc:
        return error(404 if isinstance(exc, NotFound) else 400, str(exc))
    except Exception as exc:
        known = inference.failure(exc)
        if known is None:
            raise
        return error(known[0], known[1])
    return JSONResponse({"message": f"Model '{body.model}' is loaded"})


@router.post("/stop")
async def stop(request: Request, body: ModelBody) -> Response:
    try:
        ref = inference.resolve_model(request, body.model)
    except (NotFound, inference.BadRequest) as exc:
        return error(404 if isinstance(exc, NotFound) else 400, str(exc))
    if not await inference.scheduler(request).unload(ref):
        return error(400, f"model '{body.model}' is not loaded")
    return JSONResponse({"message": f"Model '{body.model}' is unloaded"})


@router.get("/status/{model:path}")
async def status(request: Request, model: str) -> Response:
    """Cortex's `GET /v1/models/status/{id}`: 200 while the model is loaded, else a 400 saying
    why (404 for a model the store does not have)."""
    if await engines.remote_target(request, model) is not None:
        return JSONResponse({"message": "Model is running"})  # its engine serves it
    try:
        ref = inference.resolve_model(request, model)
    except (NotFound, inference.BadRequest) as exc:
        return error(404 if isinstance(exc, NotFound) else 400, str(exc))
    if inference.scheduler(request).loaded.get(name_key(ref)) is None:
        return error(400, f"model '{model}' is not loaded")
    return JSONResponse({"message": "Model is running"})


@router.delete("/{model:path}", responses=errors(OpenAIError))  # OpenAI's route, OpenAI's errors
async def delete(request: Request, model: str) -> Response:
    from roost.server.openai import error as openai_error

    try:
        ref = inference.resolve_model(request, model)
    except (NotFound, inference.BadRequest, InvalidName):
        return openai_error(404, f"model '{model}' not found")
    await inference.scheduler(request).unload(ref)
    request.app.state.store.delete(ref.name)
    return JSONResponse({"id": model, "object": "model", "deleted": True})
