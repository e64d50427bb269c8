"""The dialect-free request and answer that every API router translates to and from.

Stdlib only: the server, the scheduler and the runner protocol all pass these around, and
none of them should pay for another's imports.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

# Ollama's sampling defaults; a dialect with other defaults (OpenAI's) sets them explicitly.
DEFAULT_OPTIONS: dict[str, Any] = {
    "temperature": 0.8,
    "top_k": 40,
    "top_p": 0.9,
    "min_p": 0.0,
    "typical_p": 1.0,
    "repeat_penalty": 1.0,
    "repeat_last_n": 64,
    "presence_penalty": 0.0,
    "frequency_penalty": 0.0,
    "seed": -1,
    "num_predict": -1,
    "stop": [],
}


@dataclass
class Sampling:
    """What reaches llama.cpp's sampler chain and the stop logic for one sequence."""

    temperature: float = 0.8
    top_k: int = 40
    top_p: float = 0.9
    min_p: float = 0.0
    typical_p: float = 1.0
    repeat_penalty: float = 1.0
    repeat_last_n: int = 64
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    seed: int = -1
    num_predict: int = -1
    stop: list[str] = field(default_factory=list)
    num_keep: int = 4  # a context shift keeps this many tokens at the start; -1: the whole prompt

    @classmethod
    def from_options(cls, options: dict[str, Any]) -> Sampling:
        known = {k: options[k] for k in cls.__dataclass_fields__ if options.get(k) is not None}
        if isinstance(known.get("stop"), str):
            known["stop"] = [known["stop"]]
        return cls(**known)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class CoreRequest:
    """One generation: a prompt already rendered by the model's template."""

    model: str
    prompt: str
    sampling: Sampling = field(default_factory=Sampling)
    num_ctx: int | None = None
    format: Any = None  # "json" or a JSON schema; the runner turns it into a grammar
    keep_alive: float | None = None  # seconds; None: the server default; < 0: forever
    logprobs: int | None = None  # None: none; N >= 0: each token's, and N alternatives
    grammar: str | None = None  # raw GBNF the output must match (instead of `format`)
    truncate: bool = True  # a prompt longer than the context keeps its end; False: refuse it
    shift: bool = True  # an answer that fills the context drops its oldest half; False: ends it


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
    history: bool = False  # the Modelfile's MESSAGE layers go in (after the system text in generate)
    suffix: str | None = None  # fill in the middle: the text after the answer (insert capability)
    context: list[int] | None = None  # generate: the tokens of an earlier exchange to continue
    return_context: bool = False  # generate: the Done carries prompt + answer as tokens
    truncate: bool = True  # too long for the context: drop the oldest turns, then the start
    shift: bool = True  # an answer that fills the context goes on past its oldest half
    grammar: str | None = None  # raw GBNF
    tagged_calls: bool = False  # generate: a model with a parser gets its tool calls parsed


@dataclass
class Piece:
    """Generated text, with the log-probabilities of its tokens when they were asked for."""

    text: str
    logprobs: list[dict[str, Any]] | None = None


@dataclass
class Done:
    """The last chunk of an answer: why it ended, and what it cost."""

    reason: str  # "stop" | "length"
    prompt_tokens: int = 0  # the whole prompt; prompt_eval_count is the part not cached
    prompt_eval_count: int = 0
    prompt_eval_ns: int = 0
    eval_count: int = 0
    eval_ns: int = 0
    load_ns: int = 0
    context: list[int] = field(default_factory=list)
    truncated: int = 0  # prompt tokens left out to fit the context
    stop_sequence: str | None = None  # the request's stop string that ended it, if one did

    @property
    def whole_prompt(self) -> int:
        """The prompt's length, a reused cached prefix included: what every dialect reports."""
        return self.prompt_tokens or self.prompt_eval_count

    @property
    def cached_tokens(self) -> int:
        """The part of the prompt whose KV cache was reused rather than evaluated."""
        return max(self.whole_prompt - self.prompt_eval_count, 0)


# Every option name Ollama's API accepts. Those without meaning here (GPU placement, mmap,
# legacy flags) are accepted and ignored with a log line; any other name is a bad request.
LOAD_OPTIONS = frozenset({
    "num_ctx", "num_batch", "num_gpu", "main_gpu", "use_mmap", "use_mlock", "num_thread",
    "numa", "low_vram", "f16_kv", "logits_all", "vocab_only", "embedding_only",
    "draft_num_predict",
})
SAMPLING_OPTIONS = frozenset(Sampling.__dataclass_fields__)
IGNORED_OPTIONS = frozenset({
    "tfs_z", "mirostat", "mirostat_tau", "mirostat_eta", "penalize_newline",
})
KNOWN_OPTIONS = LOAD_OPTIONS | SAMPLING_OPTIONS | IGNORED_OPTIONS


class OptionError(ValueError):
    pass


_INT32 = 2**31 - 1
MAX_NUM_CTX = 1 << 20
MAX_STOP = 64
MAX_STOP_CHARS = 1000

# Each checked option: its kind and inclusive bounds. Bounds keep a request from reaching
# a runner with values that make it allocate without limit (num_ctx 2**31) or run sampler
# code on NaN; the names are Ollama's, which OpenAI requests are translated to.
_NUMBER, _INTEGER, _BOOLEAN = "number", "integer", "boolean"
_RANGES: dict[str, tuple[str, float, float]] = {
    "temperature": (_NUMBER, 0, 100),
    "top_p": (_NUMBER, 0, 1),
    "min_p": (_NUMBER, 0, 1),
    "typical_p": (_NUMBER, 0, 1),
    "repeat_penalty": (_NUMBER, 0, 100),
    "presence_penalty": (_NUMBER, -100, 100),
    "frequency_penalty": (_NUMBER, -100, 100),
    "tfs_z": (_NUMBER, 0, 100),
    "mirostat_tau": (_NUMBER, 0, 100),
    "mirostat_eta": (_NUMBER, 0, 100),
    "top_k": (_INTEGER, -1, _INT32),  # 0 or -1: off
    "seed": (_INTEGER, -(2**63), 2**64 - 1),
    "num_predict": (_INTEGER, -2, _INT32),
    "num_keep": (_INTEGER, -1, _INT32),
    "repeat_last_n": (_INTEGER, -1, _INT32),
    "num_ctx": (_INTEGER, 1, MAX_NUM_CTX),
    "num_batch": (_INTEGER, 1, 1 << 16),
    "num_gpu": (_INTEGER, -1, _INT32),
    "main_gpu": (_INTEGER, 0, 1024),
    "num_thread": (_INTEGER, 0, 1024),
    "mirostat": (_INTEGER, 0, 2),
    "draft_num_predict": (_INTEGER, 0, _INT32),
    **{name: (_BOOLEAN, 0, 1) for name in (
        "use_mmap", "use_mlock", "numa", "low_vram", "f16_kv", "logits_all", "vocab_only",
        "embedding_only", "penalize_newline")},
}


def check_options(options: dict[str, Any]) -> list[str]:
    """Raise on a name no dialect knows or a value out of range; return the names with no effect."""
    unknown = sorted(set(options) - KNOWN_OPTIONS)
    if unknown:
        raise OptionError(f"invalid option provided: {', '.join(unknown)}")
    for name, value in options.items():
        if value is not None and name in _RANGES:
            _check_value(name, value, *_RANGES[name])
    _check_stop(options.get("stop"))
    return sorted(k for k in options if k in IGNORED_OPTIONS or
                  (k in LOAD_OPTIONS and k not in ("num_ctx", "num_gpu")))


def _check_value(name: str, value: Any, kind: str, low: float, high: float) -> None:
    if kind == _BOOLEAN:
        if not isinstance(value, bool):
            raise OptionError(f'option "{name}" must be of type boolean')
        return
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise OptionError(f'option "{name}" must be of type {kind}')
    if kind == _INTEGER and isinstance(value, float) and not value.is_integer():
        raise OptionError(f'option "{name}" must be of type integer')
    if not (math.isfinite(value) and low <= value <= high):
        raise OptionError(f'option "{name}" must be between {low:g} and {high:g}, got {value!r}'
                          if kind == _NUMBER else
                          f'option "{name}" must be between {int(low)} and {int(high)}, got {value!r}')


def _check_stop(stop: Any) -> None:
    if stop is None:
        return
    stops = [stop] if isinstance(stop, str) else stop
    if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
        raise OptionError('option "stop" must be a string or an array of strings')
    if len(stops) > MAX_STOP:
        raise OptionError(f'option "stop" may hold at most {MAX_STOP} strings, got {len(stops)}')
    if any(len(s) > MAX_STOP_CHARS for s in stops):
        raise OptionError(f'option "stop": each string may be at most {MAX_STOP_CHARS} characters')
