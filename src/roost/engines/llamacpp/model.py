"""One GGUF model and one multi-sequence context on llama-cpp-python's low-level API.

Only the runner process imports this. The context is created once per load, with one KV
pool shared by all sequences (kv_unified), which makes prefix reuse across slots cheap.
Contexts are not thread-safe: everything here runs on the runner's single thread.
"""

from __future__ import annotations

import ctypes
import sys
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import llama_cpp.llama_cpp as ll

from roost.engines.llamacpp import cpu_buffers

_LOG_LEVEL_WARN = 3
_LOG_LEVEL_ERROR = 4
_LOG_LEVEL_CONT = 5
# llama.cpp says why a load failed only in its log: the last errors, for the load's error.
_errors: deque[str] = deque(maxlen=4)


@ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p)
def _log(level: int, text: bytes, _data: ctypes.c_void_p) -> None:
    # llama.cpp logs every tensor at INFO; keep warnings and errors for the server log.
    if _LOG_LEVEL_WARN <= level < _LOG_LEVEL_CONT and text:
        line = text.decode("utf-8", errors="replace")
        sys.stderr.write(line)
        if level == _LOG_LEVEL_ERROR and line.strip():
            _errors.append(line.strip())


class LoadError(RuntimeError):
    pass


def _load_failure(name: str) -> LoadError:
    """The reason llama.cpp logged ("error loading model: ..."), without its function names."""
    reasons = [line.rsplit("error loading model: ", 1)[-1] for line in _errors
               if "error loading model" in line] or [line.split(": ", 1)[-1] for line in _errors]
    reason = reasons[-1] if reasons else "no reason given"
    return LoadError(f"llama.cpp could not load {name}: {reason}")


@dataclass(frozen=True)
class LoadOptions:
    path: Path
    num_ctx: int  # per sequence
    num_parallel: int
    num_threads: int
    num_batch: int = 512
    num_gpu: int = 0  # Ollama's num_gpu: layers to offload (-1 means all)
    embedding: bool = False
    cpu_kernels: str = "all"  # cpu_buffers.MODES: which CPU buffer types may hold weights
    adapters: tuple[Path, ...] = ()  # LoRA GGUFs applied to the context, each at scale 1


class Model:
    def __init__(self, opts: LoadOptions) -> None:
        ll.llama_backend_init()
        ll.llama_log_set(_log, ctypes.c_void_p(0))
        mparams = ll.llama_model_default_params()
        mparams.n_gpu_layers = _gpu_layers(opts.num_gpu)
        place = cpu_buffers.placement(opts.cpu_kernels, opts.path)
        place.apply(mparams)
        self.repacked = place.repacked
        _errors.clear()
        self.model = ll.llama_model_load_from_file(str(opts.path).encode(), mparams)
        if not self.model:
            raise _load_failure(opts.path.name)
        self.vocab = ll.llama_model_get_vocab(self.model)
        n_parallel = max(1, min(opts.num_parallel, ll.llama_max_parallel_sequences()))
        cparams = ll.llama_context_default_params()
        cparams.n_ctx = opts.num_ctx * n_parallel
        cparams.n_batch = opts.num_batch
        cparams.n_ubatch = opts.num_batch
        cparams.n_seq_max = n_parallel
        cparams.n_threads = opts.num_threads
        cparams.n_threads_batch = opts.num_threads
        cparams.kv_unified = True
        cparams.swa_full = True  # keeps reused prefixes valid on sliding-window models
        cparams.no_perf = True
        if opts.embedding:
            cparams.embeddings = True
            cparams.pooling_type = 1  # mean
        self.ctx = ll.llama_init_from_model(self.model, cparams)
        if not self.ctx:
            ll.llama_model_free(self.model)
            raise LoadError("llama.cpp could not create a context (out of memory?)")
        self.adapters: list[Any] = []  # llama_adapter_lora pointers, set on self.ctx
        self._apply_adapters(opts.adapters)
        self.memory = ll.llama_get_memory(self.ctx)
        self.n_ctx = ll.llama_n_ctx(self.ctx)
        self.n_seq = ll.llama_n_seq_max(self.ctx)
        self.n_ctx_seq = min(opts.num_ctx, self.n_ctx)
        self.n_batch = ll.llama_n_batch(self.ctx)
        self.n_vocab = ll.llama_vocab_n_tokens(self.vocab)
        self.size = int(ll.llama_model_size(self.model))
        self.gpu_layers = mparams.n_gpu_layers if ll.llama_supports_gpu_offload() else 0
        self.add_bos = bool(ll.llama_vocab_get_add_bos(self.vocab))
        self.bos = ll.llama_vocab_bos(self.vocab)
        self._piece_buf = ctypes.create_string_buffer(256)

    def _apply_adapters(self, paths: tuple[Path, ...]) -> None:
        """Load each LoRA and set them all on the context; llama.cpp frees them with the model."""
        if not paths:
            return
        loaded = []
        for path in paths:
            adapter = ll.llama_adapter_lora_init(self.model, str(path).encode())
            if not adapter:
                self.close()
                raise LoadError(f"llama.cpp could not apply the adapter {path.name} "
                                "(not a LoRA for this model?)")
            loaded.append(adapter)
        self.adapters = loaded
        if not self.attach_adapters(self.ctx):
            self.close()
            raise LoadError("llama.cpp could not set the LoRA adapters on the context")

    def attach_adapters(self, ctx: Any) -> bool:
        """Set the model's adapters, each at scale 1, on a context of it: the generation one,
        or the embedding one, so that embeddings come from the same adapted model."""
        if not self.adapters:
            return True
        n = len(self.adapters)
        adapters = (ll.llama_adapter_lora_p_ctypes * n)(*self.adapters)
        scales = (ctypes.c_float * n)(*([1.0] * n))
        return bool(ll.llama_set_adapters_lora(ctx, adapters, n, scales) == 0)

    def warm_up(self) -> None:
        """Decode a short prompt and one more token, then forget them.

        The first llama_decode is where a CPU kernel the machine cannot run faults (AMX in a
        VM that does not grant it), so it happens here, before the runner says ready, where the
        server can fall back to other kernels. It also takes the first request's stall away.
        """
        tokens = self.tokenize("Hello, world")[: max(1, self.n_batch - 1)] or [self.bos]
        batch = ll.llama_batch_init(len(tokens) + 1, 0, 1)
        try:
            for rows in (tokens, [tokens[-1]]):
                start = 0 if rows is tokens else len(tokens)
                for i, tok in enumerate(rows):
                    batch.token[i], batch.pos[i] = tok, start + i
                    batch.n_seq_id[i], batch.seq_id[i][0] = 1, 0
                    batch.logits[i] = i == len(rows) - 1
                batch.n_tokens = len(rows)
                if ll.llama_decode(self.ctx, batch) != 0:
                    raise LoadError("llama.cpp failed its warm-up decode")
        finally:
            ll.llama_batch_free(batch)
            ll.llama_memory_clear(self.memory, True)

    def tokenize(self, text: str, add_special: bool = True,
                 parse_special: bool = True) -> list[int]:
        """`add_special`: the BOS the model wants; `parse_special`: `<|im_start|>` as one token."""
        data = text.encode("utf-8")
        cap = len(data) + 8
        buf = (ll.llama_token * cap)()
        n = ll.llama_tokenize(self.vocab, data, len(data), buf, cap, add_special, parse_special)
        if n < 0:
            cap = -n
            buf = (ll.llama_token * cap)()
            n = ll.llama_tokenize(self.vocab, data, len(data), buf, cap, add_special,
                                  parse_special)
        tokens = list(buf[:n])
        # A template that writes bos_token itself plus the tokenizer's own BOS gives two.
        if len(tokens) >= 2 and tokens[0] == tokens[1] == self.bos:
            tokens.pop(0)
        return tokens

    def pieces(self, tokens: list[int], special: bool = True) -> list[bytes]:
        """Each token's own text. Any thread: `piece` shares a buffer with the decode loop."""
        out = []
        for token in tokens:
            buf = ctypes.create_string_buffer(64)
            n = ll.llama_token_to_piece(self.vocab, token, buf, len(buf), 0, special)
            if n < 0:
                buf = ctypes.create_string_buffer(-n)
                n = ll.llama_token_to_piece(self.vocab, token, buf, len(buf), 0, special)
            out.append(buf.raw[:n])
        return out

    def detokenize(self, tokens: list[int], special: bool = True) -> bytes:
        """Tokens back to text; `special` writes special tokens out, else they are left out.

        llama.cpp reads past its vocabulary for an id out of range, so ids are checked first.
        """
        bad = next((t for t in tokens if not 0 <= t < self.n_vocab), None)
        if bad is not None:
            raise ValueError(f"token {bad} is out of range (the vocabulary has "
                             f"{self.n_vocab} tokens)")
        ids = (ll.llama_token * max(1, len(tokens)))(*tokens)
        cap = len(tokens) * 8 + 16
        buf = ctypes.create_string_buffer(cap)
        n = ll.llama_detokenize(self.vocab, ids, len(tokens), buf, cap, False, special)
        if n < 0:
            cap = -n
            buf = ctypes.create_string_buffer(cap)
            n = ll.llama_detokenize(self.vocab, ids, len(tokens), buf, cap, False, special)
        return buf.raw[:n]

    def piece(self, token: int) -> bytes:
        buf = self._piece_buf
        n = ll.llama_token_to_piece(self.vocab, token, buf, len(buf), 0, False)
        if n < 0:
            buf = ctypes.create_string_buffer(-n)
            n = ll.llama_token_to_piece(self.vocab, token, buf, len(buf), 0, False)
        return buf.raw[:n]

    def is_eog(self, token: int) -> bool:
        return bool(ll.llama_vocab_is_eog(self.vocab, token))

    def close(self) -> None:
        if self.ctx:
            ll.llama_free(self.ctx)
            self.ctx = None
        if self.model:
            ll.llama_model_free(self.model)
            self.model = None


def _gpu_layers(num_gpu: int) -> int:
    """Ollama's num_gpu to llama.cpp's n_gpu_layers: -1 (auto) offloads all on a GPU build."""
    if not ll.llama_supports_gpu_offload():
        return 0
    return 999 if num_gpu < 0 else num_gpu
