"""Log-probabilities of a sampled token and its strongest alternatives, from raw logits.

Computed only for requests that ask, with numpy over the vocabulary (about a millisecond
for 152k entries): the cost is paid by that sequence alone.
"""

from __future__ import annotations

from typing import Any

import llama_cpp.llama_cpp as ll
import numpy as np

from roost.engines.llamacpp.model import Model


def entry(model: Model, batch_index: int, token: int, top: int) -> dict[str, Any]:
    """Ollama's shape: {token, logprob, bytes, top_logprobs: [{token, logprob, bytes}]}."""
    ptr = ll.llama_get_logits_ith(model.ctx, batch_index)
    logits = np.ctypeslib.as_array(ptr, shape=(model.n_vocab,)).astype(np.float64)
    peak = logits.max()
    log_z = peak + np.log(np.exp(logits - peak).sum())
    out = _one(model, token, float(logits[token] - log_z))
    if top > 0:
        best = np.argpartition(-logits, top)[:top]
        best = best[np.argsort(-logits[best])]
        out["top_logprobs"] = [_one(model, int(t), float(logits[t] - log_z)) for t in best]
    return out


def _one(model: Model, token: int, logprob: float) -> dict[str, Any]:
    raw = model.piece(token)
    return {"token": raw.decode("utf-8", errors="replace"), "logprob": logprob, "bytes": list(raw)}
