"""Continuous batching: every active sequence advances in one llama_decode per step.

Each step puts the last sampled token of every generating sequence into one batch, then
fills the rest with prompt chunks of sequences still evaluating their prompt (capped while
others generate, so a long prompt does not freeze their streams). A new sequence takes the
free slot whose cached tokens share the longest prefix with its prompt and evaluates only
the rest, so turn N of a chat costs turn N's new tokens.
"""

from __future__ import annotations

import codecs
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import llama_cpp.llama_cpp as ll

from roost.engines.llamacpp import logprobs, sampler
from roost.engines.llamacpp.model import Model
from roost.textscan import partial_suffix

# Prompt tokens per step while other sequences are generating (engine.md §1: smaller chunks
# keep streams smooth, larger ones give the new request its first token sooner).
PREFILL_CHUNK_WHILE_DECODING = 128

Event = dict[str, Any]


@dataclass
class Sequence:
    id: int
    prompt: list[int]
    opts: dict[str, Any]
    num_ctx: int
    logprobs: int | None = None  # None: not asked; N: also the N most likely alternatives
    chain: Any = None
    slot: int = -1
    pending: list[int] = field(default_factory=list)
    next_token: int = -1
    batch_index: int = -1
    generated: int = 0
    prompt_evaluated: int = 0
    hold: str = ""
    t_start: float = 0.0
    t_first: float = 0.0
    decoder: Any = field(default_factory=lambda: codecs.getincrementaldecoder("utf-8")("replace"))

    @property
    def stops(self) -> list[str]:
        return [s for s in self.opts.get("stop") or [] if s]


@dataclass
class Slot:
    index: int
    tokens: list[int] = field(default_factory=list)  # exactly what the KV cache holds
    seq: Sequence | None = None
    last_used: float = 0.0


class Batcher:
    def __init__(self, model: Model) -> None:
        self.model = model
        self.slots = [Slot(i) for i in range(model.n_seq)]
        self.waiting: deque[Sequence] = deque()
        self.active: dict[int, Sequence] = {}
        self.batch = ll.llama_batch_init(model.n_batch, 0, 1)

    # -- requests ------------------------------------------------------------------------

    def submit(self, seq_id: int, prompt: str, opts: dict[str, Any], fmt: Any,
               num_ctx: int | None, logprobs: int | None = None) -> list[Event]:
        tokens = self.model.tokenize(prompt)
        limit = min(num_ctx or self.model.n_ctx_seq, self.model.n_ctx_seq)
        if not tokens:
            return [_error(seq_id, "the prompt is empty after tokenization", 400)]
        if len(tokens) >= limit:
            return [_error(seq_id, f"the prompt is {len(tokens)} tokens, longer than the "
                                   f"context of {limit} (set num_ctx higher)", 400)]
        seq = Sequence(seq_id, tokens, opts, limit, logprobs, t_start=time.perf_counter())
        try:
            grammar = sampler.grammar_for(fmt)
            seq.chain = sampler.build(self.model.vocab, self.model.n_vocab, opts, grammar)
        except sampler.GrammarError as exc:
            return [_error(seq_id, str(exc), 400)]
        self.waiting.append(seq)
        return []

    def cancel(self, seq_id: int) -> None:
        for queued in list(self.waiting):
            if queued.id == seq_id:
                self.waiting.remove(queued)
                sampler.free(queued.chain)
        active = self.active.get(seq_id)
        if active is not None:
            self._release(active)

    def busy(self) -> bool:
        return bool(self.active) or bool(self.waiting)

    # -- the decode loop -----------------------------------------------------------------

    def step(self) -> list[Event]:
        """Run one llama_decode over every active sequence; return the events it produced."""
        self._admit()
        if not self.active:
            return []
        n = self._fill_batch()
        if n == 0:
            return []
        rc = ll.llama_decode(self.model.ctx, self.batch)
        if rc != 0:
            return self._fail_batch(rc)
        events: list[Event] = []
        for seq in list(self.active.values()):
            if seq.batch_index >= 0:
                events.extend(self._sample(seq))
        return events

    def _admit(self) -> None:
        while self.waiting:
            free = [s for s in self.slots if s.seq is None]
            if not free:
                return
            seq = self.waiting.popleft()
            slot = max(free, key=lambda s: (_common_prefix(s.tokens, seq.prompt), -s.last_used))
            self._assign(seq, slot)

    def _assign(self, seq: Sequence, slot: Slot) -> None:
        reuse = _common_prefix(slot.tokens, seq.prompt)
        reuse = min(reuse, len(seq.prompt) - 1)  # always evaluate the last prompt token
        if reuse < len(slot.tokens) and not ll.llama_memory_seq_rm(
            self.model.memory, slot.index, reuse, -1
        ):
            ll.llama_memory_seq_rm(self.model.memory, slot.index, -1, -1)
            reuse = 0
        del slot.tokens[reuse:]
        seq.slot = slot.index
        seq.pending = seq.prompt[reuse:]
        seq.prompt_evaluated = len(seq.pending)
        slot.seq = seq
        self.active[seq.id] = seq

    def _fill_batch(self) -> int:
        b = self.batch
        n = 0
        generating = [s for s in self.active.values() if not s.pending]
        for seq in generating:
            slot = self.slots[seq.slot]
            self._put(n, seq.next_token, len(slot.tokens), seq.slot, True)
            slot.tokens.append(seq.next_token)
            seq.batch_index = n
            n += 1
        budget = self.model.n_batch - n
        if generating:
            budget = min(budget, PREFILL_CHUNK_WHILE_DECODING)
        for seq in self.active.values():
            seq.batch_index = seq.batch_index if not seq.pending else -1
            if not seq.pending or budget <= 0:
                continue
            slot = self.slots[seq.slot]
            take = seq.pending[:budget]
            del seq.pending[:budget]
            for i, tok in enumerate(take):
                last = not seq.pending and i == len(take) - 1
                self._put(n, tok, len(slot.tokens), seq.slot, last)
                slot.tokens.append(tok)
                if last:
                    seq.batch_index = n
                n += 1
            budget -= len(take)
        b.n_tokens = n
        return n

    def _put(self, i: int, token: int, pos: int, seq_id: int, logits: bool) -> None:
        b = self.batch
        b.token[i] = token
        b.pos[i] = pos
        b.n_seq_id[i] = 1
        b.seq_id[i][0] = seq_id
        b.logits[i] = logits

    def _sample(self, seq: Sequence) -> list[Event]:
        index = seq.batch_index
        token = sampler.sample(seq.chain, self.model.ctx, index)
        seq.batch_index = -1
        now = time.perf_counter()
        if seq.generated == 0:
            seq.t_first = now
        if self.model.is_eog(token):
            return self._finish(seq, "stop")
        seq.generated += 1
        seq.next_token = token
        text = seq.hold + seq.decoder.decode(self.model.piece(token))
        events, stopped = _split_stop(seq, text)
        if seq.logprobs is not None:
            lp = logprobs.entry(self.model, index, token, seq.logprobs)
            if not events:
                events.append({"op": "piece", "id": seq.id, "text": ""})
            events[0]["logprobs"] = [lp]
        if stopped:
            seq.decoder.reset()
            return events + self._finish(seq, "stop")
        limit = int(seq.opts.get("num_predict", -1))
        if 0 <= limit <= seq.generated or len(self.slots[seq.slot].tokens) + 1 >= seq.num_ctx:
            return events + self._finish(seq, "length")
        return events

    def _finish(self, seq: Sequence, reason: str) -> list[Event]:
        events = []
        tail = seq.hold + seq.decoder.decode(b"", final=True)
        if tail:
            events.append({"op": "piece", "id": seq.id, "text": tail})
        now = time.perf_counter()
        first = seq.t_first or now
        events.append({
            "op": "done", "id": seq.id, "reason": reason,
            "prompt_tokens": len(seq.prompt),
            "prompt_eval_count": seq.prompt_evaluated,
            "prompt_eval_ns": int((first - seq.t_start) * 1e9),
            "eval_count": seq.generated,
            "eval_ns": int((now - first) * 1e9),
        })
        self._release(seq)
        return events

    def _release(self, seq: Sequence) -> None:
        self.active.pop(seq.id, None)
        slot = self.slots[seq.slot]
        slot.seq = None
        slot.last_used = time.monotonic()
        sampler.free(seq.chain)

    def _fail_batch(self, rc: int) -> list[Event]:
        """A failed decode is rolled back by llama.cpp: forget this step's tokens, fail its sequences."""
        message = "out of context memory" if rc == 1 else f"llama_decode failed ({rc})"
        events = []
        for seq in list(self.active.values()):
            slot = self.slots[seq.slot]
            ll.llama_memory_seq_rm(self.model.memory, slot.index, -1, -1)
            slot.tokens.clear()
            events.append(_error(seq.id, message))
            self._release(seq)
        return events

    def close(self) -> None:
        ll.llama_batch_free(self.batch)


def _split_stop(seq: Sequence, text: str) -> tuple[list[Event], bool]:
    """Emit what cannot begin a stop string; hold back a tail that still might."""
    stops = seq.stops
    if not stops:
        seq.hold = ""
        return ([{"op": "piece", "id": seq.id, "text": text}] if text else []), False
    cut = min((i for i in (text.find(s) for s in stops) if i >= 0), default=-1)
    if cut >= 0:
        seq.hold = ""
        head = text[:cut]
        return ([{"op": "piece", "id": seq.id, "text": head}] if head else []), True
    keep = partial_suffix(text, stops)
    seq.hold = text[len(text) - keep:] if keep else ""
    out = text[: len(text) - keep]
    return ([{"op": "piece", "id": seq.id, "text": out}] if out else []), False


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def _error(seq_id: int, message: str, status: int = 500) -> Event:
    """`status` is the HTTP status the server should answer with, if nothing was sent yet."""
    return {"op": "error", "id": seq_id, "message": message, "status": status}
