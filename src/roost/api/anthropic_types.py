"""Wire types of Anthropic's Messages API (`POST /v1/messages`), as far as Roost serves it.

Field names follow Anthropic's API. Unknown fields are accepted: its clients send some that
mean nothing here (`metadata`, `cache_control` on blocks, `service_tier`). A content block is
one loose model with a `type` rather than a union of one class per type, so that a block of a
type Roost does not serve reaches the router, which refuses it by name instead of leaving
pydantic to list every union member that failed.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from roost.api.wire import Wire

_Wire = Wire  # unknown fields kept, `null` as absent (roost.api.wire)


class Block(_Wire):
    """A content block: text, tool_use, tool_result or thinking (image and document are refused)."""

    type: str
    text: str | None = None
    # tool_use
    id: str | None = None
    name: str | None = None
    input: dict[str, Any] | None = None
    # tool_result
    tool_use_id: str | None = None
    content: str | list[Block] | None = None
    is_error: bool = False
    # thinking
    thinking: str | None = None
    signature: str | None = None


class MessageParam(_Wire):
    role: Literal["user", "assistant"]
    content: str | list[Block]


class Tool(_Wire):
    name: str = Field(min_length=1)
    description: str | None = None
    input_schema: dict[str, Any] = Field(default_factory=lambda: {"type": "object"})
    type: str | None = Field(None, description="absent or `custom`; server tools are refused")


class ToolChoice(_Wire):
    type: Literal["auto", "any", "tool", "none"]
    name: str | None = None
    disable_parallel_tool_use: bool | None = None


class Thinking(_Wire):
    type: Literal["enabled", "disabled", "adaptive", "between_tools"]
    budget_tokens: int | None = Field(None, description="accepted; the model thinks as it will")


class OutputFormat(_Wire):
    type: Literal["json_schema"]
    schema_: dict[str, Any] = Field(alias="schema")


class OutputConfig(_Wire):
    effort: str | None = Field(None, description="low, medium, high, xhigh or max: a think level")
    format: OutputFormat | None = Field(None, description="the answer's JSON schema (structured output)")


class CountTokensRequest(_Wire):
    """`POST /v1/messages/count_tokens`: the conversation part of a Messages request."""

    model: str = Field(min_length=1)
    messages: list[MessageParam] = Field(min_length=1)
    system: str | list[Block] | None = None
    tools: list[Tool] | None = None
    tool_choice: ToolChoice | None = None
    thinking: Thinking | None = None
    output_config: OutputConfig | None = None
    # roost extension
    keep_alive: str | float | None = Field(
        None, description="how long the model stays loaded after this request (Ollama's keep_alive)")


class MessagesRequest(CountTokensRequest):
    max_tokens: int = Field(ge=1)
    metadata: dict[str, Any] | None = None
    stop_sequences: list[str] | None = None
    stream: bool = False
    temperature: float | None = Field(None, description="older clients' field; newer send it as an extra")
    top_p: float | None = None
    top_k: int | None = None
    # Ollama's option names (such as `seed` or `num_ctx`) are read from the extra fields too


class TokenCount(_Wire):
    input_tokens: int = Field(description="the prompt as the model's template renders it")


# -- responses (documented in /openapi.json; the server writes the same shapes as dicts) ----

class Usage(_Wire):
    input_tokens: int
    output_tokens: int


class Message(_Wire):
    id: str = Field(description="msg_...")
    type: Literal["message"] = "message"
    role: Literal["assistant"] = "assistant"
    model: str
    content: list[dict[str, Any]] = Field(
        description="blocks: {type: text, text}, {type: thinking, thinking, signature}, "
                    "{type: tool_use, id: toolu_..., name, input}")
    stop_reason: Literal["end_turn", "max_tokens", "stop_sequence", "tool_use"]
    stop_sequence: str | None = None
    usage: Usage


class ErrorDetail(_Wire):
    type: str = Field(description="invalid_request_error, authentication_error, not_found_error, "
                                  "overloaded_error or api_error")
    message: str


class AnthropicError(_Wire):
    type: Literal["error"] = "error"
    error: ErrorDetail
