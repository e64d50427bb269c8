"""Response shapes of both dialects, for the OpenAPI document and for typed clients.

The server builds its answers as plain dicts (a per-token model would cost on every
piece); these models describe exactly those dicts, so /openapi.json tells a client
generator or a fuzzer what each route returns.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class _Out(BaseModel):
    model_config = ConfigDict(extra="allow", defer_build=True)


class ErrorResponse(_Out):
    error: str


class CortexError(_Out):
    """The error shape of Cortex's routes (threads, engines, configs, presets, model start/stop)."""

    message: str


class Details(_Out):
    parent_model: str = ""
    format: str = "gguf"
    family: str = ""
    families: list[str] = Field(default_factory=list)
    parameter_size: str = ""
    quantization_level: str = ""


class _Timings(_Out):
    model: str
    created_at: str = Field(description="RFC 3339")
    done: bool
    done_reason: str | None = Field(None, description="stop, length, load or unload")
    total_duration: int | None = Field(None, description="nanoseconds")
    load_duration: int | None = None
    prompt_eval_count: int | None = None
    prompt_eval_duration: int | None = None
    eval_count: int | None = None
    eval_duration: int | None = None


class ToolCallOut(_Out):
    function: dict[str, Any] = Field(description="{index, name, arguments: object}")


class GenerateResponse(_Timings):
    response: str = ""
    thinking: str | None = None
    tool_calls: list[ToolCallOut] | None = Field(
        None, description="on the final chunk: calls a tool-capable model wrote")


class MessageOut(_Out):
    role: str = "assistant"
    content: str = ""
    thinking: str | None = None
    tool_calls: list[ToolCallOut] | None = None


class ChatResponse(_Timings):
    message: MessageOut


class ModelEntry(_Out):
    name: str
    model: str
    modified_at: str
    size: int
    digest: str
    details: Details


class ListResponse(_Out):
    models: list[ModelEntry]


class RunningModel(ModelEntry):
    expires_at: str
    size_vram: int
    context_length: int


class ProcessResponse(_Out):
    models: list[RunningModel]


class ShowResponse(_Out):
    license: str = ""
    modelfile: str = ""
    parameters: str = ""
    template: str = ""
    system: str = ""
    details: Details
    messages: list[dict[str, Any]] = Field(default_factory=list)
    model_info: dict[str, Any] | None
    capabilities: list[str]
    modified_at: str
    tensors: list[dict[str, Any]] | None = Field(
        None, description="with `verbose`: each tensor's name, type and shape")
    requires: str | None = Field(None, description="the Modelfile's REQUIRES, kept, not enforced")
    parser: str | None = Field(None, description="the built-in output parser the model names")


class EmbedResponse(_Out):
    model: str
    embeddings: list[list[float]]
    total_duration: int
    load_duration: int
    prompt_eval_count: int


class EmbeddingsResponse(_Out):
    embedding: list[float]


class ProgressResponse(_Out):
    status: str
    digest: str | None = None
    total: int | None = None
    completed: int | None = None


class LinkResponse(_Out):
    """Roost's /api/blobs/{digest}/link: how the file became the blob."""

    digest: str
    link: str = Field(description="hardlink, path (recorded and checked at load) or existing")


class VersionResponse(_Out):
    version: str
    server: str = Field("roost", description="tells Roost apart from an Ollama server")


NDJSON = "application/x-ndjson"


def errors(model: type[BaseModel]) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a whole router: every 4xx and 5xx it sends, in its dialect's shape.

    Roost answers a malformed request with 400, never FastAPI's 422; declaring 4XX keeps
    FastAPI from documenting a 422 that is never sent, so the document is one a fuzzer (or a
    client generator) can hold the server to.
    """
    return {"4XX": {"model": model, "description": "the request was refused: 400 malformed, "
                    "404 not found, 413 too large"},
            "5XX": {"model": model, "description": "the server could not answer: 500 the model "
                    "failed, 503 busy (retry-after), 504 load timeout, 507 disk full"}}


def doc(model: type[BaseModel], streams: bool = False) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a route: its 200 model (streamed as NDJSON too) and error bodies."""
    ok: dict[str, Any] = {"model": model}
    if streams:
        ok["content"] = {NDJSON: {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}}}
        ok["description"] = "JSON, or NDJSON (one object per line) when `stream` is true"
    return {200: ok, 400: {"model": ErrorResponse}, 404: {"model": ErrorResponse}}
