"""Models behind any OpenAI-compatible endpoint (a hosted API, a vLLM or llama.cpp cluster).

A remote engine takes the conversation itself (it renders its own template), streams
`/chat/completions`, and its deltas become the same parsed parts and final `Done` that a
local runner's output becomes, so every dialect and the CLI serve remote models unchanged.
The engine's key goes to that engine's URL alone.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncGenerator
from typing import Any

import httpx2 as httpx

from roost.chat.parse import Parsed
from roost.core import Done

# Ollama option -> OpenAI field; num_predict is max_tokens when positive.
_FIELDS = {"temperature": "temperature", "top_p": "top_p", "seed": "seed", "stop": "stop",
           "presence_penalty": "presence_penalty", "frequency_penalty": "frequency_penalty"}


class RemoteError(RuntimeError):
    def __init__(self, message: str, status: int = 502) -> None:
        super().__init__(message)
        self.status = status


def request_body(model: str, messages: list[dict[str, Any]], options: dict[str, Any],
                 tools: list[dict[str, Any]] | None, fmt: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"model": model, "messages": [_message(m) for m in messages],
                            "stream": True, "stream_options": {"include_usage": True}}
    body.update({_FIELDS[k]: v for k, v in options.items() if k in _FIELDS and v not in (None, [])})
    if int(options.get("num_predict") or -1) > 0:
        body["max_tokens"] = int(options["num_predict"])
    if tools:
        body["tools"] = tools
    if fmt == "json":
        body["response_format"] = {"type": "json_object"}
    elif isinstance(fmt, dict):
        body["response_format"] = {"type": "json_schema",
                                   "json_schema": {"name": "format", "schema": fmt}}
    return body


def _message(m: dict[str, Any]) -> dict[str, Any]:
    """Ollama's message to OpenAI's: tool-call arguments travel as a JSON string."""
    out = {k: v for k, v in m.items() if k in ("role", "content", "name", "tool_call_id")}
    if m.get("tool_calls"):
        out["tool_calls"] = [
            {"id": c.get("id") or f"call_{i}", "type": "function",
             "function": {"name": c["function"]["name"],
                          "arguments": json.dumps(c["function"].get("arguments") or {})}}
            for i, c in enumerate(m["tool_calls"])]
    return out


async def chat(url: str, api_key: str, body: dict[str, Any],
               timeout: float = 300.0) -> AsyncGenerator[Parsed | Done, None]:
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    started, first = time.perf_counter(), 0.0
    calls: dict[int, dict[str, Any]] = {}
    finish, usage = "stop", dict[str, Any]()
    try:
        async with httpx.AsyncClient(timeout=httpx.Timeout(timeout, connect=10.0)) as http, \
                http.stream("POST", url.rstrip("/") + "/chat/completions", json=body,
                            headers=headers) as resp:
            if resp.status_code >= 400:
                await resp.aread()
                raise RemoteError(_error_text(resp), _status(resp.status_code))
            async for line in resp.aiter_lines():
                chunk = _data(line)
                if chunk is None:
                    continue
                usage = chunk["usage"] if isinstance(chunk.get("usage"), dict) else usage
                for choice in chunk.get("choices") or []:
                    finish = choice.get("finish_reason") or finish
                    part = _delta(choice.get("delta") or {}, calls)
                    if part:
                        first = first or time.perf_counter()
                        yield part
    except httpx.TimeoutException as exc:
        raise RemoteError(f"the engine at {url} did not answer in time", 504) from exc
    except httpx.TransportError as exc:
        raise RemoteError(f"could not reach the engine at {url}: {exc}") from exc
    if calls:
        yield Parsed(tool_calls=[_tool_call(i, c) for i, c in sorted(calls.items())])
    now = time.perf_counter()
    first = first or now
    yield Done(reason="length" if finish == "length" else "stop",
               prompt_tokens=int(usage.get("prompt_tokens") or 0),
               prompt_eval_count=int(usage.get("prompt_tokens") or 0),
               prompt_eval_ns=int((first - started) * 1e9),
               eval_count=int(usage.get("completion_tokens") or 0), eval_ns=int((now - first) * 1e9))


def _data(line: str) -> dict[str, Any] | None:
    if not line.startswith("data:"):
        return None
    payload = line[5:].strip()
    if not payload or payload == "[DONE]":
        return None
    try:
        chunk = json.loads(payload)
    except ValueError as exc:
        raise RemoteError(f"the engine sent something that is not JSON: {payload[:80]!r}") from exc
    if isinstance(chunk, dict) and "error" in chunk:
        err = chunk["error"]
        raise RemoteError(str(err.get("message") or err) if isinstance(err, dict) else str(err))
    return chunk if isinstance(chunk, dict) else None


def _delta(delta: dict[str, Any], calls: dict[int, dict[str, Any]]) -> Parsed:
    for call in delta.get("tool_calls") or []:  # streamed in fragments, kept until the end
        index = call.get("index")
        slot = calls.setdefault(int(index) if isinstance(index, int) else len(calls),
                                {"name": "", "arguments": ""})
        fn = call.get("function") or {}
        slot["name"] += fn.get("name") or ""
        slot["arguments"] += fn.get("arguments") or ""
    thinking = delta.get("reasoning_content") or delta.get("reasoning") or ""
    return Parsed(content=delta.get("content") or "", thinking=thinking)


def _tool_call(index: int, call: dict[str, Any]) -> dict[str, Any]:
    try:
        args = json.loads(call["arguments"]) if call["arguments"].strip() else {}
    except ValueError:
        args = {"_raw": call["arguments"]}
    return {"function": {"index": index, "name": call["name"], "arguments": args}}


def _status(remote: int) -> int:
    """The caller's status: the engine's own 4xx (a missing model, a bad request, too many
    requests) pass through; its key being refused is this server's gateway failing (502)."""
    return remote if 400 <= remote < 500 and remote not in (401, 403) else 502


def _error_text(resp: httpx.Response) -> str:
    try:
        body = resp.json()
        err = body.get("error") if isinstance(body, dict) else None
        text = (err.get("message") if isinstance(err, dict) else err) or body.get("message")
    except (ValueError, AttributeError):
        text = resp.text[:200]
    return f"the engine answered {resp.status_code}: {text or resp.reason_phrase}"
