"""Tokenize and detokenize with a model's own tokenizer, in two spellings.

Roost's `/api/tokenize` (`{model, text, special}` -> `{tokens}`) and `/api/detokenize`
(`{model, tokens, special}` -> `{text}`), and llama-server's `/tokenize` (`{content,
add_special, parse_special, with_pieces}`) and `/detokenize` (`{tokens}` -> `{content}`), whose
`model` may be left out while exactly one model is loaded (llama-server serves one). The work
runs in the model's runner, on its side lane, so it never stalls a stream's decoding; the model
is loaded for it if it is not yet. The request and answer shapes live here, beside their only
routes, rather than in `roost.api`, since no Roost client calls them yet.
"""

from __future__ import annotations

import contextlib
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import Field, StrictInt

from roost.api.responses import ErrorResponse, doc, errors
from roost.api.types import KeepAlive
from roost.api.wire import Wire
from roost.scheduler.runner import Runner
from roost.server import inference
from roost.server.inference import BadRequest
from roost.server.ollama import guarded

router = APIRouter(responses=errors(ErrorResponse))


_Body = Wire  # unknown fields kept, `null` as absent


class TokenizeRequest(_Body):
    model: str = Field(min_length=1)
    text: str
    special: bool = Field(True, description="as a prompt is tokenized: the model's BOS added and "
                          "special-token text (`<|im_start|>`) read as that token; false: plain "
                          "text")
    keep_alive: KeepAlive | None = None


class DetokenizeRequest(_Body):
    model: str = Field(min_length=1)
    tokens: list[StrictInt]
    special: bool = Field(True, description="write special tokens out as their text; false: "
                          "leave them out")
    keep_alive: KeepAlive | None = None


class TokenizeResponse(_Body):
    tokens: list[int]


class DetokenizeResponse(_Body):
    text: str


class ServerTokenizeRequest(_Body):
    """llama-server's field names and defaults."""

    content: str
    model: str | None = Field(None, description="optional while exactly one model is loaded")
    add_special: bool = Field(False, description="add the model's BOS")
    parse_special: bool = Field(True, description="read special-token text as that token")
    with_pieces: bool = Field(False, description="answer `{id, piece}` objects; a piece that is "
                              "not whole UTF-8 comes as a list of its bytes")


class ServerDetokenizeRequest(_Body):
    tokens: list[StrictInt]
    model: str | None = Field(None, description="optional while exactly one model is loaded")


class TokenPiece(_Body):
    id: int
    piece: str | list[int]


class ServerTokenizeResponse(_Body):
    tokens: list[int] | list[TokenPiece]


class ServerDetokenizeResponse(_Body):
    content: str


@router.post("/api/tokenize", responses=doc(TokenizeResponse))
async def tokenize(request: Request, body: TokenizeRequest) -> Response:
    async def run() -> Response:
        async with _runner(request, body.model, body.keep_alive) as runner:
            tokens = await runner.tokenize(body.text, body.special, body.special)
        return JSONResponse({"tokens": tokens})

    return await guarded(run)


@router.post("/api/detokenize", responses=doc(DetokenizeResponse))
async def detokenize(request: Request, body: DetokenizeRequest) -> Response:
    async def run() -> Response:
        async with _runner(request, body.model, body.keep_alive) as runner:
            text = await runner.detokenize(body.tokens, body.special)
        return JSONResponse({"text": text})

    return await guarded(run)


@router.post("/tokenize", responses=doc(ServerTokenizeResponse))
async def server_tokenize(request: Request, body: ServerTokenizeRequest) -> Response:
    async def run() -> Response:
        async with _runner(request, body.model, None) as runner:
            tokens, pieces = await runner.tokenize_pieces(
                body.content, body.add_special, body.parse_special, pieces=body.with_pieces)
        answer: list[Any] = tokens
        if body.with_pieces:
            answer = [{"id": t, "piece": p} for t, p in zip(tokens, pieces, strict=True)]
        return JSONResponse({"tokens": answer})

    return await guarded(run)


@router.post("/detokenize", responses=doc(ServerDetokenizeResponse))
async def server_detokenize(request: Request, body: ServerDetokenizeRequest) -> Response:
    async def run() -> Response:
        async with _runner(request, body.model, None) as runner:
            text = await runner.detokenize(body.tokens, True)
        return JSONResponse({"content": text})

    return await guarded(run)


def _runner(request: Request, model: str | None,
            keep_alive: Any) -> contextlib.AbstractAsyncContextManager[Runner]:
    ref = inference.resolve_model(request, model or _only_loaded(request))
    return inference.tokenizer(inference.scheduler(request), ref, keep_alive)


def _only_loaded(request: Request) -> str:
    """llama-server's routes may leave the model out: the one that is loaded, if only one is."""
    names = sorted({str(m.ref.name) for m in inference.scheduler(request).loaded.values()})
    if len(names) != 1:
        which = f"loaded: {', '.join(names)}" if names else "none is loaded"
        raise BadRequest(f"model is required ({which})")
    return names[0]
