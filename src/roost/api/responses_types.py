"""Wire types of OpenAI's Responses API (`POST /v1/responses`), as far as Roost serves it.

Roost serves it statelessly, as Ollama does: every request carries the whole conversation in
`input`, so `previous_response_id` and `conversation` are refused. Input items stay plain
dicts here: the server converts them one by one and names the item it cannot take, which
says more than a validation error over a union of a dozen item types. The response models
at the end describe the dicts the server writes, for /openapi.json.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from roost.api.wire import Wire

_Wire = Wire  # unknown fields kept, `null` as absent (roost.api.wire)


class ResponsesTool(_Wire):
    """A function tool in the Responses API's flat shape (no nested `function` object)."""

    type: str = "function"
    name: str | None = None
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class TextFormat(_Wire):
    type: Literal["text", "json_object", "json_schema"] = "text"
    name: str | None = None
    description: str | None = None
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    strict: bool | None = None


class TextConfig(_Wire):
    format: TextFormat | None = None
    verbosity: str | None = None


class Reasoning(_Wire):
    effort: str | None = Field(default=None, description="none, minimal, low, medium, high, "
                               "xhigh or max: a think level (none: no thinking)")
    summary: Literal["auto", "concise", "detailed"] | None = None
    generate_summary: Literal["auto", "concise", "detailed"] | None = None


class ResponsesRequest(_Wire):
    model: str = Field(min_length=1)
    input: str | list[dict[str, Any]] = Field(
        description="a user message, or a list of items: messages (input_text and output_text "
                    "parts), function_call and function_call_output items, reasoning items")
    instructions: str | None = None
    tools: list[ResponsesTool] | None = None
    tool_choice: str | dict[str, Any] | None = None
    text: TextConfig | None = None
    reasoning: Reasoning | None = None
    max_output_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = None
    top_p: float | None = None
    stream: bool = False
    parallel_tool_calls: bool | None = None
    previous_response_id: str | None = Field(default=None, description="not supported: stateless")
    conversation: str | dict[str, Any] | None = Field(default=None,
                                                      description="not supported: stateless")
    store: bool | None = Field(default=None, description="accepted; nothing is stored")
    background: bool | None = None
    truncation: Literal["auto", "disabled"] | None = None
    metadata: dict[str, Any] | None = None
    user: str | None = None
    include: list[str] | None = None
    # roost extensions
    keep_alive: str | float | None = Field(
        default=None, description="how long the model stays loaded (Ollama's keep_alive)")


# -- responses (documented in /openapi.json; the server writes the same shapes as dicts) ----

class InputTokensDetails(_Wire):
    cached_tokens: int = Field(description="prompt tokens whose KV cache was reused")
    cache_write_tokens: int = 0


class OutputTokensDetails(_Wire):
    reasoning_tokens: int = 0


class ResponseUsage(_Wire):
    input_tokens: int
    input_tokens_details: InputTokensDetails
    output_tokens: int
    output_tokens_details: OutputTokensDetails
    total_tokens: int


class ResponseObject(_Wire):
    id: str = Field(description="resp_...")
    object: Literal["response"] = "response"
    created_at: int
    status: Literal["completed", "incomplete", "failed", "in_progress"]
    model: str
    output: list[dict[str, Any]] = Field(
        description="reasoning {id, summary: [{type: summary_text, text}]}, message {id, role, "
                    "content: [{type: output_text, text, annotations}]} and function_call "
                    "{id, call_id, name, arguments} items, in the order they were generated")
    error: dict[str, Any] | None = None
    incomplete_details: dict[str, Any] | None = None
    parallel_tool_calls: bool = True
    tool_choice: str | dict[str, Any] = "auto"
    tools: list[dict[str, Any]] = Field(default_factory=list)
    usage: ResponseUsage | None = None
