"""Wire types of OpenAI's API dialect (`/v1/*`), as far as Roost serves it.

Field names and defaults follow OpenAI's API. Unknown fields are accepted: OpenAI clients
send many that mean nothing here (`user`, `logit_bias`, `store`, ...), and an Ollama option
name among them (`num_ctx`, `top_k`, ...) is read by the server as that option.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from roost.api.wire import Wire

_Wire = Wire  # unknown fields kept, `null` as absent (roost.api.wire)


class ContentPart(_Wire):
    """One part of an array `content`: `text` is served; image and audio parts are refused."""

    type: str
    text: str | None = None


class ChatMessage(_Wire):
    role: str
    content: str | list[ContentPart] | None = None
    name: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    tool_call_id: str | None = None


class StreamOptions(_Wire):
    include_usage: bool = False


class JsonSchemaFormat(_Wire):
    name: str | None = None
    description: str | None = None
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    strict: bool | None = None


class ResponseFormat(_Wire):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaFormat | None = None


Stop = str | list[str]


class Reasoning(_Wire):
    effort: str | None = None


class ChatCompletionRequest(_Wire):
    model: str = Field(min_length=1)
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    stop: Stop | None = None
    seed: int | None = None
    frequency_penalty: float | None = None
    presence_penalty: float | None = None
    response_format: ResponseFormat | None = None
    n: int | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None
    reasoning_effort: str | None = Field(default=None, description="none, minimal, low, medium, "
                                         "high, xhigh or max: the model's think level")
    reasoning: Reasoning | None = None
    # roost extensions
    grammar: str | None = Field(default=None, description="raw GBNF the answer must match")


class CompletionRequest(_Wire):
    model: str = Field(min_length=1)
    prompt: str | list[str]
    stream: bool = False
    stream_options: StreamOptions | None = None
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = Field(default=None, ge=0, description="unlimited when not given "
                                   "(as Ollama; OpenAI's own default is 16)")
    stop: Stop | None = None
    seed: int | None = None
    frequency_penalty: float | None = None
    presence_penalty: float | None = None
    suffix: str | None = None
    n: int | None = None
    logprobs: int | None = Field(default=None, description="alternatives per token (0-20)")
    # roost extensions
    grammar: str | None = Field(default=None, description="raw GBNF the answer must match")


class EmbeddingRequest(_Wire):
    model: str = Field(min_length=1)
    input: str | list[str] | list[int] | list[list[int]]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(default=None, gt=0)
    user: str | None = None


# -- responses (documented in /openapi.json; the server writes the same shapes as dicts) ----

class Usage(_Wire):
    prompt_tokens: int
    completion_tokens: int = 0
    total_tokens: int
    prompt_tokens_details: dict[str, int] | None = Field(
        None, description="`cached_tokens`: the prompt's prefix whose KV cache was reused")


class ChatChoice(_Wire):
    index: int
    message: dict[str, Any] = Field(description="{role, content, reasoning?, tool_calls?}")
    finish_reason: str
    logprobs: dict[str, Any] | None = None


class ChatCompletion(_Wire):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    system_fingerprint: str
    choices: list[ChatChoice]
    usage: Usage


class TextChoice(_Wire):
    text: str
    index: int
    finish_reason: str | None
    logprobs: dict[str, Any] | None = None


class Completion(_Wire):
    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    system_fingerprint: str
    choices: list[TextChoice]
    usage: Usage | None = None


class ModelObject(_Wire):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str


class ModelList(_Wire):
    object: Literal["list"] = "list"
    data: list[ModelObject]


class Embedding(_Wire):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str = Field(description="floats, or base64 little-endian float32")


class EmbeddingList(_Wire):
    object: Literal["list"] = "list"
    data: list[Embedding]
    model: str
    usage: Usage


class ErrorDetail(_Wire):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class OpenAIError(_Wire):
    error: ErrorDetail
