"""Embeddings from a loaded model: a second context with mean pooling, made on first use.

It shares the weights with the generation context (same llama_model), so `/api/embed` on a
chat model costs only its own small KV cache. Vectors are L2-normalised, as Ollama's are;
`dimensions` keeps the first N components and normalises again.

The context is the embedding thread's alone (roost.engines.llamacpp.side): it decodes while
the generation context decodes on the runner's main thread, and it yields its vectors a
group at a time, so a big batch streams back in parts and can be cancelled between groups.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import llama_cpp.llama_cpp as ll

from roost.engines.llamacpp.model import Model

MAX_SEQS = 8
POOLING_MEAN = 1


class EmbedError(ValueError):
    pass


class Embedder:
    def __init__(self, model: Model, num_threads: int) -> None:
        self.model = model
        cparams = ll.llama_context_default_params()
        self.n_ctx = model.n_ctx_seq
        cparams.n_ctx = self.n_ctx
        cparams.n_batch = self.n_ctx
        cparams.n_ubatch = self.n_ctx  # a pooled sequence must fit in one ubatch
        cparams.n_seq_max = MAX_SEQS
        cparams.kv_unified = True
        cparams.n_threads = num_threads
        cparams.n_threads_batch = num_threads
        cparams.embeddings = True
        cparams.pooling_type = POOLING_MEAN
        cparams.no_perf = True
        self.ctx = ll.llama_init_from_model(model.model, cparams)
        if not self.ctx:
            raise EmbedError("llama.cpp could not create an embedding context")
        if not model.attach_adapters(self.ctx):
            ll.llama_free(self.ctx)
            raise EmbedError("llama.cpp could not set the model's LoRA adapters on the "
                             "embedding context")
        self.memory = ll.llama_get_memory(self.ctx)
        self.n_embd = ll.llama_model_n_embd(model.model)
        self.batch = ll.llama_batch_init(self.n_ctx, 0, 1)

    def tokens(self, texts: list[str], truncate: bool,
               num_ctx: int | None = None) -> list[list[int]]:
        """Every text's tokens, checked against the context before anything is decoded."""
        limit = min(num_ctx or self.n_ctx, self.n_ctx)
        return [self._tokens(t, truncate, limit) for t in texts]

    def vectors(self, token_lists: list[list[int]], dimensions: int | None,
                threads: Callable[[], int] | None = None) -> Iterator[list[float]]:
        """One normalised vector per token list, in order, decoding MAX_SEQS texts at a time.

        `threads`, asked before each group, is how many threads that decode may use: fewer
        while the generation context is busy on the same cores.
        """
        group: list[list[int]] = []
        for tokens in token_lists:
            if group and (len(group) == MAX_SEQS or
                          sum(map(len, group)) + len(tokens) > self.n_ctx):
                yield from self._group(group, dimensions, threads)
                group = []
            group.append(tokens)
        if group:
            yield from self._group(group, dimensions, threads)

    def embed(self, texts: list[str], truncate: bool, dimensions: int | None,
              num_ctx: int | None = None) -> tuple[list[list[float]], int]:
        """Return one normalised vector per text and the number of tokens evaluated."""
        token_lists = self.tokens(texts, truncate, num_ctx)
        return list(self.vectors(token_lists, dimensions)), sum(map(len, token_lists))

    def _group(self, group: list[list[int]], dimensions: int | None,
               threads: Callable[[], int] | None) -> list[list[float]]:
        if threads is not None:
            n = threads()
            ll.llama_set_n_threads(self.ctx, n, n)
        vectors = self._decode(group)
        return [_normalise(v[:dimensions]) for v in vectors] if dimensions else vectors

    def _tokens(self, text: str, truncate: bool, limit: int) -> list[int]:
        tokens = self.model.tokenize(text) or [self.model.bos]
        if len(tokens) > limit:
            if not truncate:
                raise EmbedError(f"the input is {len(tokens)} tokens, longer than the "
                                 f"context of {limit}")
            tokens = tokens[:limit]
        return tokens

    def _decode(self, group: list[list[int]]) -> list[list[float]]:
        ll.llama_memory_clear(self.memory, True)
        b = self.batch
        n = 0
        for seq, tokens in enumerate(group):
            for pos, tok in enumerate(tokens):
                b.token[n] = tok
                b.pos[n] = pos
                b.n_seq_id[n] = 1
                b.seq_id[n][0] = seq
                b.logits[n] = True
                n += 1
        b.n_tokens = n
        if ll.llama_decode(self.ctx, b) != 0:
            raise EmbedError("llama_decode failed while embedding")
        out = []
        for seq in range(len(group)):
            ptr = ll.llama_get_embeddings_seq(self.ctx, seq)
            if not ptr:
                raise EmbedError("this model gives no pooled embeddings")
            out.append(_normalise(ptr[: self.n_embd]))
        return out

    def close(self) -> None:
        ll.llama_batch_free(self.batch)
        ll.llama_free(self.ctx)


def _normalise(v: list[float]) -> list[float]:
    norm = math.sqrt(sum(x * x for x in v))
    return [x / norm for x in v] if norm > 0 else v
