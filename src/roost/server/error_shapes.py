"""Each dialect's error body, chosen by the request's path.

Clients parse errors in their own dialect's shape: Ollama's `{"error": "..."}`, OpenAI's
`{"error": {"message", "type", "param", "code"}}`, Anthropic's `{"type": "error", "error":
{"type", "message"}}`, Cortex's `{"message": "..."}`, the registry's `{"errors": [...]}`. The
routes, and the middleware that answers before any route runs (body limits, the API key), all
ask here, so a refusal reads the same whichever layer gives it.
"""

from __future__ import annotations

from typing import Any

from roost.server.cortex import PREFIXES as CORTEX_PREFIXES

ANTHROPIC_PATH = "/v1/messages"
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
    return {"error": message}
