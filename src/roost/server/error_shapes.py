"""Each dialect's error body, chosen by the request's path.

Clients parse errors in their own dialect's shape: Ollama's `{"error": "..."}`, OpenAI's
`{"error": {"message", "type", "param", "code"}}`, Anthropic's `{"type": "error", "error":
{"type", "message"}}`, Cortex's `{"message": "..."}`, the registry's `{"errors": [...]}`. The
routes, and the middleware that answers before any route runs (body limits, the API key), all
ask here, so a refusal reads the same whichever layer gives it.
"""

from __future__ import annotations

import json
from typing import Any

from roost.server.cortex import PREFIXES as CORTEX_PREFIXES

ANTHROPIC_PATH = "/v1/messages"
REGISTRY_PATH = "/v2/"
_REGISTRY_CODES = {401: "UNAUTHORIZED", 403: "DENIED", 404: "NAME_UNKNOWN", 429: "TOOMANYREQUESTS"}
_OPENAI_KINDS = {400: "invalid_request_error", 401: "invalid_request_error",
                 404: "not_found_error", 413: "invalid_request_error"}
_ANTHROPIC_KINDS = {400: "invalid_request_error", 401: "authentication_error",
                    403: "permission_error", 404: "not_found_error", 413: "request_too_large",
                    429: "rate_limit_error", 503: "overloaded_error", 529: "overloaded_error"}


def openai_body(status: int, message: str, code: str | None = None) -> dict[str, Any]:
    kind = _OPENAI_KINDS.get(status, "api_error")
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


def anthropic_body(status: int, message: str) -> dict[str, Any]:
    return {"type": "error",
            "error": {"type": _ANTHROPIC_KINDS.get(status, "api_error"), "message": message}}


def for_path(path: str, status: int, message: str, code: str | None = None) -> dict[str, Any]:
    """The error body a client of `path` expects; `code` is OpenAI's machine-readable one."""
    if path.startswith(CORTEX_PREFIXES):
        return {"message": message}
    if path.startswith(ANTHROPIC_PATH):
        return anthropic_body(status, message)
    if path.startswith("/v1/"):
        return openai_body(status, message, code)
    if path.startswith(REGISTRY_PATH):
        return {"errors": [{"code": _REGISTRY_CODES.get(status, "UNSUPPORTED"), "message": message}]}
    return {"error": message}


def sse_error_frame(path: str, message: str) -> bytes:
    """The last event of a server-sent stream that fails after it started, in its dialect:
    Anthropic's typed `error` event, or OpenAI's `data: {"error": ...}`."""
    if path.startswith(ANTHROPIC_PATH):
        body = json.dumps(anthropic_body(500, message), separators=(",", ":"))
        return f"event: error\ndata: {body}\n\n".encode()
    return b"data: " + json.dumps(openai_body(503, message), separators=(",", ":")).encode() + b"\n\n"
