"""Wire types of Ollama's API dialect, shared by the server (validation, OpenAPI) and clients.

Field names, defaults and order follow Ollama's API. Unknown fields are accepted (newer
clients send fields older servers lack) but never silently change behaviour: the server
checks `options` names itself.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from roost.api.wire import Wire

_Wire = Wire  # unknown fields kept, `null` as absent (roost.api.wire)


Think = bool | Literal["low", "medium", "high", "max"]
KeepAlive = str | float | int


class GenerateRequest(_Wire):
    model: str = Field(min_length=1)
    prompt: str = ""
    suffix: str | None = None
    system: str | None = None
    template: str | None = None
    context: list[int] | None = None
    stream: bool = True
    raw: bool = False
    format: str | dict[str, Any] | None = None
    keep_alive: KeepAlive | None = None
    images: list[str] | None = None
    options: dict[str, Any] | None = None
    think: Think | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None
    truncate: bool | None = Field(default=None, description="a prompt longer than the context "
                                  "keeps its end (default); false: refuse it with 400")
    shift: bool | None = Field(default=None, description="an answer that fills the context "
                               "drops the oldest half of it (after num_keep) and goes on, as "
                               "Ollama does; false: it ends with done_reason length")
    # roost extensions
    grammar: str | None = Field(default=None, description="raw GBNF the answer must match")


class ToolCallFunction(_Wire):
    name: str
    arguments: dict[str, Any] = Field(default_factory=dict)


class ToolCall(_Wire):
    id: str | None = None
    function: ToolCallFunction


class Message(_Wire):
    role: str
    content: str = ""
    thinking: str | None = None
    images: list[str] | None = None
    tool_calls: list[ToolCall] | None = None
    tool_name: str | None = None


class ChatRequest(_Wire):
    model: str = Field(min_length=1)
    messages: list[Message] = Field(default_factory=list)
    tools: list[dict[str, Any]] | None = None
    format: str | dict[str, Any] | None = None
    options: dict[str, Any] | None = None
    stream: bool = True
    keep_alive: KeepAlive | None = None
    think: Think | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None
    truncate: bool | None = Field(default=None, description="a conversation longer than the "
                                  "context loses its oldest turns (default); false: 400")
    shift: bool | None = Field(default=None, description="accepted; see GenerateRequest.shift")
    # roost extensions
    grammar: str | None = Field(default=None, description="raw GBNF the answer must match")


class EmbedRequest(_Wire):
    model: str = Field(min_length=1)
    input: str | list[str] = ""
    truncate: bool = True
    dimensions: int | None = Field(default=None, gt=0)
    options: dict[str, Any] | None = None
    keep_alive: KeepAlive | None = None


class EmbeddingsRequest(_Wire):
    """The older single-text endpoint, /api/embeddings."""

    model: str = Field(min_length=1)
    prompt: str = ""
    options: dict[str, Any] | None = None
    keep_alive: KeepAlive | None = None


class ModelRequest(_Wire):
    """Requests that name one model: show, delete, pull. `name` is Ollama's older spelling."""

    model: str | None = None
    name: str | None = None
    stream: bool = True
    insecure: bool = False
    verbose: bool = False

    @property
    def target(self) -> str:
        return (self.model or self.name or "").strip()


class CreateRequest(_Wire):
    """A Modelfile in structured form (clients parse the Modelfile and upload its files)."""

    model: str = Field(min_length=1)
    from_: str | None = Field(default=None, alias="from")
    files: dict[str, str] | None = None
    adapters: dict[str, str] | None = None
    template: str | None = None
    system: str | None = None
    license: str | list[str] | None = None
    parameters: dict[str, Any] | None = None
    messages: list[dict[str, Any]] | None = None
    quantize: str | None = None
    parser: str | None = Field(default=None, description="the model's output parser, as Ollama "
                               "names it (qwen3, harmony, ...): with one, /api/generate returns the "
                               "tool calls the model writes in `tool_calls`")
    requires: str | None = Field(default=None, description="minimum Ollama version (Modelfile "
                                 "REQUIRES): kept and shown, not enforced")
    stream: bool = True


class LinkRequest(_Wire):
    """Roost extension (POST /api/blobs/{digest}/link): a file to import without copying."""

    path: str = Field(min_length=1, description="absolute path of a GGUF file on the server's "
                      "machine, readable by the server")


class CopyRequest(_Wire):
    source: str = Field(min_length=1)
    destination: str = Field(min_length=1)
