"""Continuous batching: every active sequence advances in one llama_decode per step.

Each step puts the last sampled token of every generating sequence into one batch, then
fills the rest with prompt chunks of sequences still evaluating their prompt: each about
0.75 s of work (roost.engines.llamacpp.pacing), so a cancel waits at most that long, and
capped lower while others generate, so a long prompt does not freeze their streams. A new sequence takes the
free slot whose cached tokens share the longest prefix with its prompt and evaluates only
the rest, so turn N of a chat costs turn N's new tokens.

A failed decode costs no stream: the batch is halved and each half retried in the same
step, down to a single token; only a sequence whose lone token still fails gets an error.
Preparing a request (tokenize, grammar, sampler chain: `prepare`) touches no context, so the
runner does it on another thread and hands the result to `enqueue`.
"""

from __future__ import annotations

import codecs
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import llama_cpp.llama_cpp as ll

from roost.engines.llamacpp import logprobs, sampler
from roost.engines.llamacpp.fault import DecodeFault
from roost.engines.llamacpp.model import Model
from roost.engines.llamacpp.pacing import PrefillPacer
from roost.textscan import partial_suffix

# Prompt tokens per step while other sequences are generating (engine.md §1: smaller chunks
# keep streams smooth, larger ones give the new request its first token sooner).
PREFILL_CHUNK_WHILE_DECODING = 128
NUM_KEEP = 4  # Ollama's default num_keep: tokens a context shift never drops

Event = dict[str, Any]
Row = tuple["Sequence", int, bool]  # a sequence, one of its tokens, whether to compute logits


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
    truncated: int = 0  # prompt tokens left out at the start to fit the context
    shift: bool = False  # a full context drops its oldest half instead of ending the answer
    shifted: int = 0  # tokens dropped so far by shifting
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
        self.fault = DecodeFault.from_env()  # tests only: injected decode failures
        self.pacer = PrefillPacer(model.n_batch)  # prompt chunks of about 0.75 s each

    # -- requests ------------------------------------------------------------------------

    def prepare(self, seq_id: int, prompt: str, opts: dict[str, Any], fmt: Any,
                num_ctx: int | None, logprobs: int | None = None, grammar: str | None = None,
                truncate: bool = False, shift: bool = False) -> Sequence | Event:
        """A sequence ready to enqueue, or the error event that refuses it.

        Thread-safe (tokenizing and building a sampler touch the vocabulary, not the context),
        so the runner runs it beside the decode loop: a big JSON schema or a long prompt then
        costs the streams nothing.
        """
        started = time.perf_counter()
        tokens = self.model.tokenize(prompt)
        limit = min(num_ctx or self.model.n_ctx_seq, self.model.n_ctx_seq)
        if not tokens:
            return _error(seq_id, "the prompt is empty after tokenization", 400)
        dropped = 0
        if len(tokens) >= limit:
            if not truncate:
                return _error(seq_id, f"the prompt is {len(tokens)} tokens, longer than the "
                                      f"context of {limit} (set num_ctx higher)", 400)
            tokens, dropped = _keep_end(tokens, limit, opts, self.model.bos)
        seq = Sequence(seq_id, tokens, opts, limit, logprobs, t_start=started, truncated=dropped,
                       shift=shift)
        try:
            if grammar and fmt:
                raise sampler.GrammarError("use either format or grammar, not both")
            grammar = grammar or sampler.grammar_for(fmt)
            seq.chain = sampler.build(self.model.vocab, self.model.n_vocab, opts, grammar)
        except sampler.GrammarError as exc:
            return _error(seq_id, str(exc), 400)
        return seq

    def enqueue(self, seq: Sequence) -> None:
        self.waiting.append(seq)

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
        """Run one batched decode over every active sequence; return the events it produced."""
        self._admit()
        if not self.active:
            return []
        rows = self._rows()
        return self._decode(rows) if rows else []

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

    def _rows(self) -> list[Row]:
        """This step's tokens: every generating sequence's last sample, then prompt chunks."""
        generating = [s for s in self.active.values() if not s.pending]
        rows: list[Row] = [(seq, seq.next_token, True) for seq in generating]
        budget = min(self.model.n_batch - len(rows), self.pacer.chunk())
        if generating:
            budget = min(budget, PREFILL_CHUNK_WHILE_DECODING)
        for seq in self.active.values():
            if not seq.pending or budget <= 0:
                continue
            take = seq.pending[:budget]
            del seq.pending[:budget]
            last = len(take) - 1 if not seq.pending else -1  # logits for the prompt's end only
            rows += [(seq, tok, i == last) for i, tok in enumerate(take)]
            budget -= len(take)
        return rows

    def _decode(self, rows: list[Row]) -> list[Event]:
        """Decode `rows`, halving a batch that fails and retrying each half in order.

        A lone token that still fails fails its sequence, and only that one; its later rows
        are dropped. A cache out of cells first gives up the idle slots' kept prefixes.
        """
        events: list[Event] = []
        todo: deque[list[Row]] = deque([rows])
        while todo:
            chunk = [r for r in todo.popleft() if self.active.get(r[0].id) is r[0]]
            if not chunk:
                continue
            started = time.perf_counter()
            rc = self._decode_once(chunk)
            if rc == 0:
                prompt_rows = sum(1 for row in chunk if not row[2])  # generating rows ask logits
                self.pacer.record(prompt_rows, time.perf_counter() - started)
                events += self._sample_rows(chunk)
            elif rc == 1 and self._evict_idle():
                todo.appendleft(chunk)
            elif len(chunk) == 1:
                events += self._fail(chunk[0][0], rc)
            else:
                half = len(chunk) // 2
                todo.extendleft([chunk[half:], chunk[:half]])  # extendleft reverses: first half first
        return events

    def _decode_once(self, rows: list[Row]) -> int:
        """One llama_decode of `rows`; on success the slots' token lists grow by them."""
        next_pos: dict[int, int] = {}
        max_pos = 0
        for i, (seq, token, logits) in enumerate(rows):
            pos = next_pos.get(seq.slot, len(self.slots[seq.slot].tokens))
            next_pos[seq.slot] = pos + 1
            max_pos = max(max_pos, pos)
            self._put(i, token, pos, seq.slot, logits)
            if logits:
                seq.batch_index = i
        self.batch.n_tokens = len(rows)
        if self.fault is not None and self.fault.fails(len(rows), max_pos):
            rc = 1
        else:
            rc = ll.llama_decode(self.model.ctx, self.batch)
        if rc != 0:
            for slot in next_pos:  # llama.cpp rolls a failed batch back; make sure of it
                ll.llama_memory_seq_rm(self.model.memory, slot, len(self.slots[slot].tokens), -1)
            return int(rc)
        for seq, token, _ in rows:
            self.slots[seq.slot].tokens.append(token)
        return 0

    def _sample_rows(self, rows: list[Row]) -> list[Event]:
        events: list[Event] = []
        for seq, _, logits in rows:
            if logits:
                events += self._sample(seq)
        return events

    def _evict_idle(self) -> bool:
        """Drop the prefixes idle slots keep for reuse; say whether that freed any cells."""
        freed = False
        for slot in self.slots:
            if slot.seq is None and slot.tokens:
                ll.llama_memory_seq_rm(self.model.memory, slot.index, -1, -1)
                slot.tokens.clear()
                freed = True
        return freed

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
        if stopped is not None:
            seq.decoder.reset()
            return events + self._finish(seq, "stop", stopped)
        limit = int(seq.opts.get("num_predict", -1))
        if 0 <= limit <= seq.generated:
            return events + self._finish(seq, "length")
        if len(self.slots[seq.slot].tokens) + 1 >= seq.num_ctx and not self._shift(seq):
            return events + self._finish(seq, "length")
        return events

    def _shift(self, seq: Sequence) -> bool:
        """Ollama's context shift: a generation that fills its context keeps `num_keep` tokens
        at the start, drops half of the rest and goes on; the KV cells move down, not recomputed."""
        slot = self.slots[seq.slot]
        wanted = int(seq.opts.get("num_keep", NUM_KEEP))
        keep = max(0, min(len(seq.prompt) if wanted < 0 else wanted, len(slot.tokens) - 2))
        discard = (len(slot.tokens) - keep) // 2
        if not seq.shift or discard <= 0 or not ll.llama_memory_can_shift(self.model.memory):
            return False
        memory = self.model.memory
        if not ll.llama_memory_seq_rm(memory, slot.index, keep, keep + discard):
            return False
        ll.llama_memory_seq_add(memory, slot.index, keep + discard, -1, -discard)
        del slot.tokens[keep:keep + discard]
        seq.shifted += discard
        return True

    def _finish(self, seq: Sequence, reason: str, stop: str | None = None) -> list[Event]:
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
            **({"stop_sequence": stop} if stop is not None else {}),
            **({"truncated": seq.truncated} if seq.truncated else {}),
        })
        self._release(seq)
        return events

    def _release(self, seq: Sequence) -> None:
        self.active.pop(seq.id, None)
        slot = self.slots[seq.slot]
        if seq.shifted:  # its cells were computed beside tokens now gone: no prefix to reuse
            ll.llama_memory_seq_rm(self.model.memory, slot.index, -1, -1)
            slot.tokens.clear()
        slot.seq = None
        slot.last_used = time.monotonic()
        sampler.free(seq.chain)

    def _fail(self, seq: Sequence, rc: int) -> list[Event]:
        """Fail one sequence whose lone token llama.cpp will not decode; free its cells."""
        slot = self.slots[seq.slot]
        ll.llama_memory_seq_rm(self.model.memory, slot.index, -1, -1)
        slot.tokens.clear()
        self._release(seq)
        if rc == 1:  # the KV cache has no room: busy, not broken; a retry later may fit
            return [_error(seq.id, "out of context memory: the model's KV cache is full; "
                                   "try again, or with a smaller num_ctx", 503)]
        return [_error(seq.id, f"llama_decode failed ({rc})")]

    def close(self) -> None:
        ll.llama_batch_free(self.batch)


def _split_stop(seq: Sequence, text: str) -> tuple[list[Event], str | None]:
    """Emit what cannot begin a stop string; hold back a tail that still might. The stop
    string found first in the text, if any, is returned: the answer ends there."""
    stops = seq.stops
    if not stops:
        seq.hold = ""
        return ([{"op": "piece", "id": seq.id, "text": text}] if text else []), None
    cut, found = min(((i, s) for s in stops if (i := text.find(s)) >= 0), default=(-1, None))
    if found is not None:
        seq.hold = ""
        head = text[:cut]
        return ([{"op": "piece", "id": seq.id, "text": head}] if head else []), found
    keep = partial_suffix(text, stops)
    seq.hold = text[len(text) - keep:] if keep else ""
    out = text[: len(text) - keep]
    return ([{"op": "piece", "id": seq.id, "text": out}] if out else []), None


def _keep_end(tokens: list[int], limit: int, opts: dict[str, Any], bos: int) -> tuple[list[int], int]:
    """Ollama's default for a prompt too long for the context: keep its end (and a leading
    BOS), leaving room to answer: num_predict if small, else a quarter of the context."""
    predict = int(opts.get("num_predict", -1))
    room = predict if 0 < predict <= limit // 2 else max(limit // 4, 1)
    head = tokens[:1] if tokens[0] == bos else []
    keep = max(limit - room - len(head), 1)
    kept = head + tokens[-keep:]
    return kept, len(tokens) - len(kept)


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def _error(seq_id: int, message: str, status: int = 500) -> Event:
    """`status` is the HTTP status the server should answer with, if nothing was sent yet."""
    return {"op": "error", "id": seq_id, "message": message, "status": status}
