"""Build one llama.cpp sampler chain per sequence from Ollama-style options.

Sampling stays in C. The chain starts from the full vocabulary, so top_k goes first and the
penalties after it (0.2 ms per step instead of 0.7 ms on a 152k vocabulary); temperature
0 is greedy alone.
"""

from __future__ import annotations

import ctypes
import json
from typing import Any

import llama_cpp.llama_cpp as ll
from llama_cpp import llama_grammar


class GrammarError(ValueError):
    pass


def grammar_for(fmt: Any) -> str | None:
    """Ollama's `format`: "json" for any JSON value, or a JSON schema the output must match."""
    if not fmt:
        return None
    if fmt == "json":
        return str(llama_grammar.JSON_GBNF)
    try:
        return str(llama_grammar.json_schema_to_gbnf(json.dumps(fmt)))
    except Exception as exc:  # the converter raises plain Exceptions on unsupported schemas
        raise GrammarError(f"unsupported JSON schema in format: {exc}") from exc


def build(vocab: Any, n_vocab: int, opts: dict[str, Any], grammar: str | None) -> Any:
    chain = ll.llama_sampler_chain_init(ll.llama_sampler_chain_default_params())

    def add(sampler: Any) -> None:
        ll.llama_sampler_chain_add(chain, sampler)

    if grammar:
        g = ll.llama_sampler_init_grammar(vocab, grammar.encode(), b"root")
        if not g:
            ll.llama_sampler_free(chain)
            raise GrammarError("llama.cpp could not parse the output grammar")
        add(g)
    temperature = float(opts.get("temperature", 0.8))
    top_k = int(opts.get("top_k", 40))
    if top_k > 0 and temperature > 0:
        add(ll.llama_sampler_init_top_k(top_k))
    repeat = float(opts.get("repeat_penalty", 1.0))
    freq = float(opts.get("frequency_penalty", 0.0))
    presence = float(opts.get("presence_penalty", 0.0))
    if repeat != 1.0 or freq != 0.0 or presence != 0.0:
        last_n = int(opts.get("repeat_last_n", 64))
        add(ll.llama_sampler_init_penalties(n_vocab, max(last_n, 0), repeat, freq, presence))
    if temperature <= 0:
        add(ll.llama_sampler_init_greedy())
        return chain
    typical = float(opts.get("typical_p", 1.0))
    if 0 < typical < 1.0:
        add(ll.llama_sampler_init_typical(typical, 1))
    top_p = float(opts.get("top_p", 0.9))
    if 0 < top_p < 1.0:
        add(ll.llama_sampler_init_top_p(top_p, 1))
    min_p = float(opts.get("min_p", 0.0))
    if min_p > 0:
        add(ll.llama_sampler_init_min_p(min_p, 1))
    add(ll.llama_sampler_init_temp(temperature))
    seed = int(opts.get("seed", -1))  # llama.cpp takes 32 bits; negative: a random seed
    add(ll.llama_sampler_init_dist(seed & 0xFFFFFFFF if seed >= 0 else ll.LLAMA_DEFAULT_SEED))
    return chain


def free(chain: Any) -> None:
    ll.llama_sampler_free(chain)


def sample(chain: Any, ctx: Any, batch_index: int) -> int:
    """Sample at a batch row; llama_sampler_sample also accepts the token into the chain."""
    return int(ll.llama_sampler_sample(chain, ctx, ctypes.c_int32(batch_index)))
