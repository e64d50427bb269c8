"""The engine seam: every turn, from any dialect, is answered by one of two engines.

`LocalEngine` runs a model from the store on a llama.cpp runner through the scheduler:
resolve, check, render the template (trimming a conversation to the context), run, parse.
`RemoteEngine` sends the conversation to an OpenAI-compatible endpoint registered as
`roost engines add NAME` and serves it as `MODEL:NAME`. Both check the request before anything
runs and answer with the same stream of `Parsed` parts and a final `Done`, so the routers
and the CLI never know which one answered.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator
from typing import Any

from fastapi import Request

from roost.chat.parse import Parsed
from roost.core import Done, OptionError, Turn, check_options
from roost.engines import remote
from roost.models.names import InvalidName, Name
from roost.models.resolve import ModelRef, NotFound
from roost.scheduler.runner import Runner, RunnerError
from roost.server.inference import (
    BadRequest,
    build_request,
    check_capabilities,
    format_of,
    generate,
    output_parser,
    parsed,
    render_chat,
    resolve_model,
    scheduler,
    tokenizer,
)
from roost.threads.store import Engine as EngineRecord
from roost.threads.store import Store

log = logging.getLogger("roost.server")
Answer = AsyncGenerator[Parsed | Done, None]


class Engine:
    """What answers a turn; `start` raises before anything runs if the turn is bad."""

    async def start(self, turn: Turn) -> Answer:
        raise NotImplementedError

    async def count_tokens(self, turn: Turn) -> int:
        """The prompt's length in the model's tokens, as `start` would send it."""
        raise NotImplementedError


async def engine_for(request: Request, model: str) -> Engine:
    target = await remote_target(request, model)
    if target is not None:
        return RemoteEngine(*target)
    return LocalEngine(request)


async def local_model(request: Request, model: str, work: str) -> ModelRef:
    """A model from the store, for `work` that only the local engine does (embeddings): a
    remote engine's model is named as such, not reported missing. The store is asked first,
    so a local model costs no database lookup."""
    try:
        return resolve_model(request, model)
    except (NotFound, BadRequest):  # `MODEL:ENGINE` is no valid store name
        target = await remote_target(request, model)
        if target is None:
            raise
    raise BadRequest(f"model '{model}' is served by engine '{target[0].name}', which Roost uses "
                     f"for chat only: {work} need a local model")


async def count_tokens(request: Request, turn: Turn) -> int:
    return await (await engine_for(request, turn.model)).count_tokens(turn)


async def start(request: Request, turn: Turn) -> Answer:
    """The answer to a turn from whichever engine serves its model."""
    return await (await engine_for(request, turn.model)).start(turn)


def _messages(turn: Turn, layers: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """A chat's messages, or a generate prompt as one: its system text, then the Modelfile's
    MESSAGE `layers` (Ollama's order for generate), then the prompt as the user's message."""
    if turn.messages is not None:
        return turn.messages
    messages = [{"role": "system", "content": turn.system}] if turn.system else []
    return [*messages, *(layers or []), {"role": "user", "content": turn.prompt}]


class LocalEngine(Engine):
    def __init__(self, request: Request) -> None:
        self.request = request

    def _model(self, turn: Turn) -> ModelRef:
        try:
            ref = resolve_model(self.request, turn.model)
        except NotFound as exc:  # Ollama's words for a model to generate with
            raise NotFound(f"{exc}, try pulling it first") from exc
        if turn.suffix and "insert" not in ref.capabilities:
            raise BadRequest(f'"{turn.model}" does not support insert')
        return ref

    async def _prompt(self, ref: ModelRef, turn: Turn) -> str:
        if turn.suffix:
            return fill_in_middle(ref, turn.prompt, turn.suffix)
        if turn.raw:
            return turn.prompt
        history = turn.history and turn.context is None  # a continued exchange had them already
        if turn.messages is None:  # generate: the layers go after the system text
            messages, history = _messages(turn, ref.messages if history else None), False
        else:
            messages = turn.messages
        return await render_chat(ref, messages, tools=turn.tools, template=turn.template,
                                 think=turn.think, history=history)

    async def count_tokens(self, turn: Turn) -> int:
        ref = self._model(turn)
        check_capabilities(ref, turn.tools, turn.think)  # the same refusals as a generation
        prompt = await self._prompt(ref, turn)
        async with tokenizer(scheduler(self.request), ref, turn.keep_alive) as runner:
            return len(await runner.tokenize(prompt))

    async def start(self, turn: Turn) -> Answer:
        ref = self._model(turn)
        scheduler(self.request).check_queue()  # a full queue refuses before the template renders
        req = build_request(ref, "", turn.options, turn.keep_alive, turn.format, turn.defaults,
                            logprobs=turn.logprobs, top_logprobs=turn.top_logprobs,
                            grammar=turn.grammar, truncate=turn.truncate, shift=turn.shift)
        req.prompt = await self._prompt(ref, turn)
        fit = None
        if turn.truncate and turn.messages is not None and len(turn.messages) > 1:
            async def fit(runner: Runner, limit: int) -> str:
                return await _fit(runner, limit, ref, turn, req.prompt)

        parser = output_parser(ref, req.prompt, turn.tools, turn.think,
                               tagged_calls=turn.tagged_calls and bool(ref.config.get("parser")))
        return parsed(generate(scheduler(self.request), ref, req, fit, turn.context,
                               turn.return_context), parser)


def fill_in_middle(ref: ModelRef, prefix: str, suffix: str) -> str:
    """The model's own fill-in-the-middle tokens around the text before and after the gap."""
    pre, suf, mid = ref.config["fim"]
    return f"{pre}{prefix}{suf}{suffix}{mid}"

class RemoteEngine(Engine):
    def __init__(self, record: EngineRecord, model: str, key: str) -> None:
        self.record, self.model, self.key = record, model, key

    async def count_tokens(self, turn: Turn) -> int:
        raise BadRequest(f"engine '{self.record.name}' cannot count tokens: an OpenAI-compatible "
                         "endpoint has no route for it")

    async def start(self, turn: Turn) -> Answer:
        if turn.raw:
            raise BadRequest(f"engine '{self.record.name}' takes chat messages, not raw prompts")
        try:
            check_options(turn.options or {})
        except OptionError as exc:
            raise BadRequest(str(exc)) from exc
        body = remote.request_body(self.model, _messages(turn),
                                   {**(turn.defaults or {}), **(turn.options or {})}, turn.tools,
                                   format_of(turn.format))
        return self._stream(body)

    async def _stream(self, body: dict[str, Any]) -> Answer:
        try:
            async for item in remote.chat(self.record.url, self.key, body):
                yield item
        except remote.RemoteError as exc:
            raise RunnerError(f"engine '{self.record.name}': {exc}", exc.status) from exc


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


async def remote_target(request: Request, model: str) -> tuple[EngineRecord, str, str] | None:
    """`MODEL:ENGINE` where ENGINE is a registered remote engine: (engine, model, its key)."""
    name, sep, engine_name = model.rpartition(":")
    if not sep or not name:
        return None
    db: Store = request.app.state.db
    engine = await asyncio.to_thread(db.engine, engine_name)
    if engine is None or _is_local(request, model):
        return None  # a model in the store is never rerouted by an engine named like its tag
    key = engine.api_key or (await asyncio.to_thread(db.configs)).get(f"{engine.name}_api_key", "")
    return engine, name, key


def _is_local(request: Request, model: str) -> bool:
    try:
        return request.app.state.store.get(Name.parse(model)) is not None
    except InvalidName:
        return False
