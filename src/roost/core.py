"""The dialect-free request and answer that every API router translates to and from.

Stdlib only: the server, the scheduler and the runner protocol all pass these around, and
none of them should pay for another's imports.
"""

from __future__ import annotations

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


# Every option name Ollama's API accepts. Those without meaning here (GPU placement, mmap,
# legacy flags) are accepted and ignored with a log line; any other name is a bad request.
LOAD_OPTIONS = frozenset({
    "num_ctx", "num_batch", "num_gpu", "main_gpu", "use_mmap", "use_mlock", "num_thread",
    "numa", "low_vram", "f16_kv", "logits_all", "vocab_only", "embedding_only",
    "draft_num_predict",
})
SAMPLING_OPTIONS = frozenset(Sampling.__dataclass_fields__)
IGNORED_OPTIONS = frozenset({
    "num_keep", "tfs_z", "mirostat", "mirostat_tau", "mirostat_eta", "penalize_newline",
})
KNOWN_OPTIONS = LOAD_OPTIONS | SAMPLING_OPTIONS | IGNORED_OPTIONS


class OptionError(ValueError):
    pass


def check_options(options: dict[str, Any]) -> list[str]:
    """Raise on a name no dialect knows; return the known ones that have no effect here."""
    unknown = sorted(set(options) - KNOWN_OPTIONS)
    if unknown:
        raise OptionError(f"invalid option provided: {', '.join(unknown)}")
    for name in ("temperature", "top_p", "min_p", "typical_p", "repeat_penalty",
                 "presence_penalty", "frequency_penalty"):
        value = options.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise OptionError(f'option "{name}" must be of type number')
    for name in ("top_k", "seed", "num_predict", "repeat_last_n", "num_ctx", "num_gpu"):
        value = options.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise OptionError(f'option "{name}" must be of type integer')
    stop = options.get("stop")
    if stop is not None and not (isinstance(stop, str) or
                                 (isinstance(stop, list) and all(isinstance(s, str) for s in stop))):
        raise OptionError('option "stop" must be a string or an array of strings')
    return sorted(k for k in options if k in IGNORED_OPTIONS or
                  (k in LOAD_OPTIONS and k not in ("num_ctx", "num_gpu")))
