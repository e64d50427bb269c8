"""What every dialect shares: checking a request, rendering, running, parsing, and errors.

The engines (server.engines) build a turn's answer from these pieces; the routers encode
the answer's stream (`Parsed` parts and a final `Done`) and map errors raised before it
starts through `guarded` and `failure`, each in its own dialect.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import secrets
import string
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from typing import Any

from fastapi import Request
from fastapi.responses import Response

from roost.chat import sandbox
from roost.chat import template as templates
from roost.chat.parse import OutputParser, Parsed
from roost.core import (
    DEFAULT_OPTIONS,
    CoreRequest,
    Done,
    OptionError,
    Piece,
    Sampling,
    check_options,
)
from roost.durations import parse_duration
from roost.models.names import InvalidName
from roost.models.resolve import ModelRef, NotFound, resolve
from roost.scheduler.runner import LoadRefused, Runner, RunnerError
from roost.scheduler.scheduler import QueueFull, Scheduler, name_key
from roost.server import grammar as gbnf
from roost.server import metrics
from roost.server.disconnect import ClientGone

log = logging.getLogger("roost.server")


class BadRequest(ValueError):
    pass


ErrorResponse = Callable[[Exception, int, str, dict[str, str]], Response]


async def guarded(fn: Callable[[], Awaitable[Response]], respond: ErrorResponse) -> Response:
    """Run a route; an error raised before its answer starts becomes `respond`'s response
    (each dialect its own shape), a departed client a 499 that only the access log sees."""
    try:
        return await fn()
    except ClientGone:
        return Response(status_code=499)
    except Exception as exc:
        known = failure(exc)
        if known is None:
            raise
        return respond(exc, *known)


def failure(exc: Exception) -> tuple[int, str, dict[str, str]] | None:
    """The status, message and headers of an error raised before an answer starts."""
    if isinstance(exc, BadRequest):
        return 400, str(exc), {}
    if isinstance(exc, NotFound):
        return 404, str(exc), {}
    if isinstance(exc, QueueFull):
        return 503, str(exc), {"retry-after": "1"}
    if isinstance(exc, LoadRefused):  # OpenAI's clients would retry a 500 twice, in vain
        return exc.status, str(exc), {"x-should-retry": "false"}
    if isinstance(exc, RunnerError):
        return exc.status, str(exc), {"retry-after": "1"} if exc.status == 503 else {}
    return None


def scheduler(request: Request) -> Scheduler:
    return request.app.state.scheduler  # type: ignore[no-any-return]


def resolve_model(request: Request, name: str) -> ModelRef:
    """The model a request names; a malformed name is the client's error (400)."""
    try:
        return resolve(request.app.state.store, name)
    except InvalidName as exc:
        raise BadRequest(str(exc)) from exc


MAX_KEEP_ALIVE = 100 * 365 * 86400.0  # longer than this is forever


def keep_alive_seconds(value: Any) -> float | None:
    if value is None:
        return None
    try:
        seconds = parse_duration(value)
    except ValueError as exc:
        raise BadRequest(f"invalid keep_alive: {exc}") from exc
    if math.isnan(seconds):
        raise BadRequest(f"invalid keep_alive: {value!r}")
    return -1.0 if seconds > MAX_KEEP_ALIVE or seconds < 0 else seconds


def build_request(ref: ModelRef, prompt: str, options: dict[str, Any] | None,
                  keep_alive: Any, fmt: Any, defaults: dict[str, Any] | None = None,
                  logprobs: bool | None = None, top_logprobs: int | None = None,
                  grammar: str | None = None, truncate: bool = True,
                  shift: bool = True) -> CoreRequest:
    """Layer the options: dialect defaults, then the model's parameters, then the request's."""
    options = options or {}
    try:
        ignored = check_options(options)
    except OptionError as exc:
        raise BadRequest(str(exc)) from exc
    if ignored:
        log.info("options with no effect here: %s", ", ".join(ignored))
    merged = {**DEFAULT_OPTIONS, **(defaults or {}), **ref.params, **options}
    num_ctx = merged.get("num_ctx")
    return CoreRequest(
        model=str(ref.name),
        prompt=prompt,
        sampling=Sampling.from_options(merged),
        num_ctx=int(num_ctx) if num_ctx else None,
        format=format_of(fmt),
        keep_alive=keep_alive_seconds(keep_alive),
        logprobs=_logprobs(logprobs, top_logprobs),
        grammar=grammar_of(grammar, fmt),
        truncate=truncate,
        shift=shift,
    )


def grammar_of(text: str | None, fmt: Any) -> str | None:
    """A raw GBNF grammar, checked here so a bad one is a 400 before any runner sees it."""
    if not text:
        return None
    if fmt not in (None, ""):
        raise BadRequest("use either format or grammar, not both")
    try:
        gbnf.check(text)
    except gbnf.GrammarSyntaxError as exc:
        raise BadRequest(str(exc)) from exc
    return text


def _logprobs(wanted: bool | None, top: int | None) -> int | None:
    if not wanted and not top:
        return None
    if top is not None and not 0 <= top <= 20:
        raise BadRequest("top_logprobs must be between 0 and 20")
    return top or 0


def format_of(fmt: Any) -> Any:
    """`format` travels to the runner, which turns it into a llama.cpp grammar."""
    if fmt in (None, ""):
        return None
    if fmt == "json" or isinstance(fmt, dict):
        return fmt
    raise BadRequest(f"invalid format {fmt!r}: use \"json\" or a JSON schema")


async def render_chat(ref: ModelRef, messages: list[dict[str, Any]],
                      tools: list[dict[str, Any]] | None = None, template: str | None = None,
                      think: Any = None, history: bool = False) -> str:
    """Render in the template sandbox's worker processes: bounded in memory and time, and
    off the event loop, since a template may come from the request itself."""
    if history and ref.messages:  # the Modelfile's MESSAGE layers start the conversation
        messages = [*ref.messages, *messages]
    if ref.system and not any(m.get("role") == "system" for m in messages):
        messages = [{"role": "system", "content": ref.system}, *messages]
    try:
        return await asyncio.to_thread(
            sandbox.render,
            template or ref.template, messages, tools=tools,
            bos_token=ref.config.get("bos_token", ""), eos_token=ref.config.get("eos_token", ""),
            think=think,
        )
    except templates.TemplateRenderError as exc:
        raise BadRequest(str(exc)) from exc


Fit = Callable[[Runner, int], Awaitable[str]]


async def generate(scheduler: Scheduler, ref: ModelRef, req: CoreRequest,
                   fit: Fit | None = None, context: list[int] | None = None,
                   return_context: bool = False) -> AsyncGenerator[Piece | Done, None]:
    """Hold the model for the whole stream; the load time is reported on the Done.

    `context` (Ollama's generate) is an earlier exchange's tokens: their text goes before
    the prompt, and the slot's cached prefix makes that cheap. With `return_context` the
    Done carries the tokens of prompt and answer, for the next request to continue from.
    """
    started = time.perf_counter()
    watched = metrics.watch(str(ref.name))  # tokens, first-token time, decode rate
    async with scheduler.use(ref, req.num_ctx, req.keep_alive) as loaded:
        load_ns = int((time.perf_counter() - started) * 1e9)
        limit = min(req.num_ctx or loaded.num_ctx, loaded.num_ctx)
        if context:
            req.prompt = await loaded.runner.detokenize(context) + req.prompt
        # A token is at least one byte (the BOS aside): a shorter prompt needs no counting.
        if fit is not None and len(req.prompt.encode()) + 1 >= limit:
            req.prompt = await fit(loaded.runner, limit)
        answer: list[str] = []
        async for item in loaded.runner.complete(req):
            if isinstance(item, Done):
                item.load_ns = load_ns
                if item.truncated:
                    log.info("left out the first %d tokens of a prompt to fit a context of %d "
                             "tokens", item.truncated, limit)
                if return_context:
                    item.context = await loaded.runner.tokenize(req.prompt + "".join(answer))
            else:
                answer.append(item.text)
            watched.see(item)
            yield item


async def embed(scheduler: Scheduler, ref: ModelRef, texts: list[str], truncate: bool,
                dimensions: int | None, options: dict[str, Any] | None,
                keep_alive: Any) -> tuple[list[list[float]], int, int]:
    """Embed texts with the model's pooled output; returns vectors, tokens and load time (ns)."""
    try:
        check_options(options or {})
    except OptionError as exc:
        raise BadRequest(str(exc)) from exc
    num_ctx = (options or {}).get("num_ctx")
    started = time.perf_counter()
    async with scheduler.use(ref, int(num_ctx) if num_ctx else None,
                             keep_alive_seconds(keep_alive)) as loaded:
        load_ns = int((time.perf_counter() - started) * 1e9)
        if not texts:
            return [], 0, load_ns
        vectors, count = await loaded.runner.embed(texts, truncate, dimensions,
                                                   int(num_ctx) if num_ctx else None)
    return vectors, count, load_ns


def check_capabilities(ref: ModelRef, tools: list[dict[str, Any]] | None, think: Any) -> None:
    """A request for thinking or tools from a model without them is the client's error."""
    if think not in (None, False) and "thinking" not in ref.capabilities:
        raise BadRequest(f'"{ref.name}" does not support thinking')
    if tools and "tools" not in ref.capabilities:
        raise BadRequest(f'"{ref.name}" does not support tools')


def output_parser(ref: ModelRef, prompt: str, tools: list[dict[str, Any]] | None,
                  think: Any, tagged_calls: bool = False) -> OutputParser:
    """Check what the request asks of the model, and set up the parsing of its output.

    `tagged_calls` reads the tool calls of a model that can make them even though the request
    offered none: a generate prompt (or its system text) may describe tools, and for a model
    whose config names a built-in parser Ollama then answers with `tool_calls`, not with the
    raw tags. Without offered tools there are no names to match, so only tagged calls count,
    never bare JSON.
    """
    check_capabilities(ref, tools, think)
    caps = ref.capabilities
    thinking = "thinking" in caps and think is not False
    names = frozenset(str((t.get("function") or t).get("name", "")) for t in tools or [])
    return OutputParser(tools=bool(tools) or (tagged_calls and "tools" in caps), think=thinking,
                        tool_names=names,
                        starts_thinking=thinking and prompt.rstrip().endswith("<think>"))


async def parsed(stream: AsyncGenerator[Piece | Done, None],
                 parser: OutputParser) -> AsyncGenerator[Parsed | Done, None]:
    """The model's text as content, thinking and whole tool calls; Done last."""
    try:
        async for item in stream:
            if isinstance(item, Done):
                tail = parser.finish()
                if tail:
                    yield _with_ids(tail)
                yield item
                return
            part = parser.feed(item.text)
            part.logprobs = item.logprobs or []
            if part:
                yield _with_ids(part)
    finally:
        await stream.aclose()


def _with_ids(part: Parsed) -> Parsed:
    for call in part.tool_calls:
        call.setdefault("id", tool_call_id())
    return part


def tool_call_id() -> str:
    """Ollama's shape: "call_" and 8 random lowercase letters and digits."""
    return "call_" + "".join(secrets.choice(_ID_CHARS) for _ in range(8))


_ID_CHARS = string.ascii_lowercase + string.digits


async def gather(stream: AsyncGenerator[Parsed | Done, None]) -> tuple[Parsed, Done]:
    """A whole answer, for a client that did not ask for a stream."""
    whole = Parsed()
    try:
        async for item in stream:
            if isinstance(item, Done):
                return whole, item
            whole.content += item.content
            whole.thinking += item.thinking
            whole.tool_calls += item.tool_calls
            whole.logprobs += item.logprobs
    finally:
        await stream.aclose()
    raise RunnerError("the answer ended before it was done")


@contextlib.asynccontextmanager
async def tokenizer(scheduler: Scheduler, ref: ModelRef, keep_alive: Any) -> AsyncIterator[Runner]:
    """The model's runner, held (and loaded if need be) while its tokenizer is used. A loaded
    runner serves whatever its context: asking for the default one could reload it."""
    current = scheduler.loaded.get(name_key(ref))
    num_ctx = current.num_ctx if current is not None else None
    async with scheduler.use(ref, num_ctx, keep_alive_seconds(keep_alive)) as loaded:
        yield loaded.runner


async def load_only(scheduler: Scheduler, ref: ModelRef, keep_alive: float | None) -> str:
    """An empty prompt loads the model (or unloads it with keep_alive 0): Ollama's preload."""
    if keep_alive == 0:
        await scheduler.unload(ref)
        return "unload"
    async with scheduler.use(ref, None, keep_alive):
        pass
    return "load"


def _tool_schema(tool: dict[str, Any]) -> dict[str, Any]:
    function = tool.get("function")
    if not isinstance(function, dict):
        raise BadRequest("each tool needs a function object")
    return {"type": "object",
            "properties": {"name": {"const": function.get("name", "")},
                           "arguments": function.get("parameters") or {"type": "object"}},
            "required": ["name", "arguments"]}


def tool_choice(tools: list[dict[str, Any]] | None,
                 choice: str | dict[str, Any] | None) -> tuple[list[dict[str, Any]] | None, Any]:
    """Enforce tool_choice with a grammar: the tools the template sees, and the output format.

    "none" hides the tools; "required" or a named function constrains the answer to a JSON
    call of an offered tool, which the output parser turns into a tool call.
    """
    if not tools or choice in (None, "auto"):
        return tools, None
    if choice == "none":
        return None, None
    if choice == "required":
        return tools, {"anyOf": [_tool_schema(t) for t in tools]}
    if isinstance(choice, dict):
        function = choice.get("function")
        name = function.get("name") if isinstance(function, dict) else None
        if not isinstance(name, str):
            raise BadRequest("tool_choice must name a function: {\"type\": \"function\", "
                             "\"function\": {\"name\": ...}}")
        chosen = [t for t in tools if isinstance(t.get("function"), dict)
                  and t["function"].get("name") == name]
        if not chosen:
            raise BadRequest(f"tool_choice names '{name}', which is not among the tools")
        return tools, _tool_schema(chosen[0])
    raise BadRequest(f"invalid tool_choice {choice!r}")


# OpenAI's reasoning efforts onto Ollama's think levels; the ends of OpenAI's scale (and
# clients' own tiers) go to the nearest level, as Ollama maps them.
REASONING_EFFORTS: dict[str, bool | str] = {
    "none": False, "minimal": "low", "low": "low", "medium": "medium", "high": "high",
    "max": "max", "xhigh": "max", "ultra": "max",
}
