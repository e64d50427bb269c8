"""Dialect-free generation: resolve the model, check the request, render, run, parse.

Every router translates its request into one `Turn` and calls `start`, which does all the
checking before any runner is touched and returns the answer as one stream: `Parsed` parts
(content, thinking, tool calls) and a final `Done`. Errors raised before the first part map
onto HTTP statuses through `failure`; each router encodes the stream and the errors in its
own dialect.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass
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
from roost.engines import remote
from roost.models.names import InvalidName
from roost.models.resolve import ModelRef, NotFound, resolve
from roost.scheduler.runner import Runner, RunnerError
from roost.scheduler.scheduler import QueueFull, Scheduler
from roost.server.disconnect import ClientGone
from roost.threads.store import Engine
from roost.threads.store import Store as ThreadStore

log = logging.getLogger("roost.server")


class BadRequest(ValueError):
    pass


@dataclass
class Turn:
    """One generation, as any dialect asks for it."""

    model: str
    messages: list[dict[str, Any]] | None = None  # chat: rendered by the model's template
    prompt: str = ""  # generate and completions: the user's text
    raw: bool = False  # the prompt goes to the model as it is
    system: str | None = None
    template: str | None = None  # a request's own template (Ollama's generate)
    tools: list[dict[str, Any]] | None = None
    think: Any = None
    format: Any = None
    options: dict[str, Any] | None = None
    defaults: dict[str, Any] | None = None  # the dialect's sampling defaults
    keep_alive: Any = None
    logprobs: bool | None = None
    top_logprobs: int | None = None
    history: bool = False  # the Modelfile's MESSAGE layers start the conversation (chat)


async def start(request: Request, turn: Turn) -> AsyncGenerator[Parsed | Done, None]:
    """Check everything, render the prompt, and start the answer; raise before any runner."""
    target = await remote_target(request, turn.model)
    if target is not None:
        return _remote(target, turn)
    ref = resolve_model(request, turn.model)
    req = build_request(ref, "", turn.options, turn.keep_alive, turn.format, turn.defaults,
                        logprobs=turn.logprobs, top_logprobs=turn.top_logprobs)
    if turn.raw:
        req.prompt = turn.prompt
    else:
        messages = turn.messages
        if messages is None:
            messages = [{"role": "system", "content": turn.system}] if turn.system else []
            messages.append({"role": "user", "content": turn.prompt})
        req.prompt = await render_chat(ref, messages, tools=turn.tools, template=turn.template,
                                       think=turn.think, history=turn.history)
    fit = None
    if turn.messages is not None and len(turn.messages) > 1:
        chat = turn

        async def fit(runner: Runner, limit: int) -> str:
            return await _fit(runner, limit, ref, chat, req.prompt)

    parser = output_parser(ref, req.prompt, turn.tools, turn.think)
    return parsed(generate(scheduler(request), ref, req, fit), parser)


async def _fit(runner: Runner, limit: int, ref: ModelRef, turn: Turn, prompt: str) -> str:
    """A conversation longer than the context loses its oldest turns, whole, until it fits.

    System messages and the newest message stay; a turn is never cut in the middle. If even
    that does not fit, the prompt goes as it is and the runner says it is too long.
    """
    messages = list(turn.messages or [])
    dropped = 0
    while len(await runner.tokenize(prompt)) >= limit:
        older = [i for i, m in enumerate(messages[:-1]) if m.get("role") != "system"]
        if not older:
            break
        first = older[0]
        end = first + 1  # the turn: a message and the answers and tool results after it
        while end < len(messages) - 1 and messages[end].get("role") not in ("user", "system"):
            end += 1
        del messages[first:end]
        dropped += end - first
        prompt = await render_chat(ref, messages, tools=turn.tools, template=turn.template,
                                   think=turn.think, history=turn.history)
    if dropped:
        log.info("left out the %d oldest messages of a conversation to fit a context of %d tokens",
                 dropped, limit)
    return prompt


async def remote_target(request: Request, model: str) -> tuple[Engine, str, str] | None:
    """`MODEL:ENGINE` where ENGINE is a registered remote engine: (engine, model, its key)."""
    name, sep, engine_name = model.rpartition(":")
    if not sep or not name:
        return None
    db: ThreadStore = request.app.state.db
    engine = await asyncio.to_thread(db.engine, engine_name)
    if engine is None:
        return None
    key = engine.api_key or (await asyncio.to_thread(db.configs)).get(f"{engine.name}_api_key", "")
    return engine, name, key


async def _remote(target: tuple[Engine, str, str],
                  turn: Turn) -> AsyncGenerator[Parsed | Done, None]:
    """The same checks as a local turn, then the engine's stream; its errors as runner errors."""
    engine, model, key = target
    if turn.raw:
        raise BadRequest(f"engine '{engine.name}' takes chat messages, not raw prompts")
    try:
        check_options(turn.options or {})
    except OptionError as exc:
        raise BadRequest(str(exc)) from exc
    messages = turn.messages
    if messages is None:
        messages = [{"role": "system", "content": turn.system}] if turn.system else []
        messages.append({"role": "user", "content": turn.prompt})
    body = remote.request_body(model, messages, {**(turn.defaults or {}), **(turn.options or {})},
                               turn.tools, _format(turn.format))
    try:
        async for item in remote.chat(engine.url, key, body):
            yield item
    except remote.RemoteError as exc:
        raise RunnerError(f"engine '{engine.name}': {exc}", exc.status) from exc


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
    if isinstance(exc, RunnerError):
        return exc.status, str(exc), {}
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
                  logprobs: bool | None = None, top_logprobs: int | None = None) -> CoreRequest:
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
        format=_format(fmt),
        keep_alive=keep_alive_seconds(keep_alive),
        logprobs=_logprobs(logprobs, top_logprobs),
    )


def _logprobs(wanted: bool | None, top: int | None) -> int | None:
    if not wanted and not top:
        return None
    if top is not None and not 0 <= top <= 20:
        raise BadRequest("top_logprobs must be between 0 and 20")
    return top or 0


def _format(fmt: Any) -> Any:
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
                   fit: Fit | None = None) -> AsyncGenerator[Piece | Done, None]:
    """Hold the model for the whole stream; the load time is reported on the Done."""
    started = time.perf_counter()
    async with scheduler.use(ref, req.num_ctx, req.keep_alive) as loaded:
        load_ns = int((time.perf_counter() - started) * 1e9)
        limit = min(req.num_ctx or loaded.num_ctx, loaded.num_ctx)
        # A token is at least one byte (the BOS aside): a shorter prompt needs no counting.
        if fit is not None and len(req.prompt.encode()) + 1 >= limit:
            req.prompt = await fit(loaded.runner, limit)
        async for item in loaded.runner.complete(req):
            if isinstance(item, Done):
                item.load_ns = load_ns
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


def output_parser(ref: ModelRef, prompt: str, tools: list[dict[str, Any]] | None,
                  think: Any) -> OutputParser:
    """Check what the request asks of the model, and set up the parsing of its output."""
    caps = ref.capabilities
    if think not in (None, False) and "thinking" not in caps:
        raise BadRequest(f'"{ref.name}" does not support thinking')
    if tools and "tools" not in caps:
        raise BadRequest(f'"{ref.name}" does not support tools')
    thinking = "thinking" in caps and think is not False
    names = frozenset(str((t.get("function") or t).get("name", "")) for t in tools or [])
    return OutputParser(tools=bool(tools), think=thinking, tool_names=names,
                        starts_thinking=thinking and prompt.rstrip().endswith("<think>"))


async def parsed(stream: AsyncGenerator[Piece | Done, None],
                 parser: OutputParser) -> AsyncGenerator[Parsed | Done, None]:
    """The model's text as content, thinking and whole tool calls; Done last."""
    try:
        async for item in stream:
            if isinstance(item, Done):
                tail = parser.finish()
                if tail:
                    yield tail
                yield item
                return
            part = parser.feed(item.text)
            part.logprobs = item.logprobs or []
            if part:
                yield part
    finally:
        await stream.aclose()


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


async def load_only(scheduler: Scheduler, ref: ModelRef, keep_alive: float | None) -> str:
    """An empty prompt loads the model (or unloads it with keep_alive 0): Ollama's preload."""
    if keep_alive == 0:
        await scheduler.unload(ref)
        return "unload"
    async with scheduler.use(ref, None, keep_alive):
        pass
    return "load"
