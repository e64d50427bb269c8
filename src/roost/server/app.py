"""The FastAPI application: state, security middleware, error shapes, and the routers.

All server state lives on `app.state`, built here; nothing is a module-level singleton, so
a test can build as many apps as it likes.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import IO

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from roost import __version__, config
from roost.chat import sandbox
from roost.models.store import Store
from roost.scheduler.scheduler import Scheduler
from roost.server import (
    anthropic,
    cortex,
    cortex_engines,
    cortex_models,
    error_shapes,
    metrics,
    ollama,
    ollama_models,
    openai,
    openai_responses,
    presets,
    registry,
    tokenize,
    web,
)
from roost.server.body import BodyLimits
from roost.server.drain import Drain, DrainGuard
from roost.server.security import (
    ALLOWED_HEADERS,
    LOCAL_ORIGINS,
    ApiKey,
    HostGuard,
    OriginGuard,
    is_loopback,
)
from roost.threads.store import Store as ThreadStore

log = logging.getLogger("roost.server")


def create_app(home: Path | None = None, bind_host: str = "127.0.0.1",
               runner_log: IO[bytes] | None = None) -> FastAPI:
    root = home or config.home()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        await app.state.scheduler.close()
        sandbox.close()

    app = FastAPI(title="Roost", version=__version__, lifespan=lifespan,
                  docs_url=None, redoc_url=None)
    app.state.store = Store(root)
    app.state.scheduler = Scheduler(home=root, log=runner_log)
    app.state.db = ThreadStore(root / "roost.db")  # threads, engines, configs
    app.state.bind_host = bind_host
    app.state.drain = Drain()  # main.py starts its clock when the server is told to stop

    # Starlette runs the last added outermost: the drain, Host guard, Origin guard, CORS,
    # API key, body limits, routes.
    app.add_middleware(BodyLimits)
    app.add_middleware(ApiKey, key=config.api_key(root), bind_host=bind_host)
    app.add_middleware(
        CORSMiddleware,
        allow_origins=config.origins(),
        allow_origin_regex=LOCAL_ORIGINS,
        allow_methods=["*"],
        allow_headers=list(ALLOWED_HEADERS),
    )
    app.add_middleware(OriginGuard, allowed=config.origins(),
                       same_origin=is_loopback(bind_host) or bool(config.api_key(root)))
    app.add_middleware(HostGuard, bind_host=bind_host, allowed=config.allowed_hosts())
    app.add_middleware(DrainGuard, drain=app.state.drain, error=_error)

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        return _error(request.url.path, 400, _validation_message(exc))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _error(request.url.path, exc.status_code, str(exc.detail), exc.headers)

    app.include_router(ollama.router)
    app.include_router(ollama_models.router)
    app.include_router(cortex_models.router)  # before openai's GET /v1/models/{model:path}
    app.include_router(openai.router)
    app.include_router(openai_responses.router)
    app.include_router(anthropic.router)
    app.include_router(registry.router)
    app.include_router(cortex.router)
    app.include_router(cortex_engines.router)
    app.include_router(presets.router)
    app.include_router(tokenize.router)
    app.include_router(web.router)  # `/`: the status line, or the chat page for a browser
    metrics.install(app)  # last: its middleware counts every answer
    return app


def _error(path: str, status: int, message: str,
           headers: Mapping[str, str] | None = None) -> JSONResponse:
    """Each dialect's error shape: Cortex's, Anthropic's, OpenAI's /v1, Ollama's elsewhere."""
    return JSONResponse(error_shapes.for_path(path, status, message), status_code=status,
                        headers=headers)


def _validation_message(exc: RequestValidationError) -> str:
    errors = exc.errors()
    if not errors:
        return "invalid request"
    first = errors[0]
    if first.get("type") == "json_invalid":
        return "invalid JSON in request body"
    if first.get("type") == "missing" and tuple(first.get("loc", ())) == ("body",):
        return "missing request body"
    where = ".".join(str(p) for p in first.get("loc", ())[1:])
    return f"{where}: {first.get('msg', 'invalid value')}" if where else str(first.get("msg"))
