"""How much memory a model will take, estimated from its GGUF metadata before loading it.

Weights are mmapped whole; the KV cache is n_ctx x n_parallel cells of K and V per layer
in f16. This is Ollama's estimate without the GPU part; the scheduler compares it with the
memory the system says is available and unloads idle models to make room.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

F16_BYTES = 2
GRAPH_OVERHEAD = 64 * 1024 * 1024  # compute buffers, measured at 30-60 MB for small models


def kv_bytes_per_token(config: dict[str, Any]) -> int:
    info = config.get("model_info") or {}
    arch = info.get("general.architecture", "")
    layers = int(info.get(f"{arch}.block_count") or 0)
    heads = int(info.get(f"{arch}.attention.head_count") or 1)
    kv_heads = int(info.get(f"{arch}.attention.head_count_kv") or heads)
    embd = int(info.get(f"{arch}.embedding_length") or 0)
    key_len = int(info.get(f"{arch}.attention.key_length") or (embd // max(heads, 1)))
    value_len = int(info.get(f"{arch}.attention.value_length") or key_len)
    return layers * kv_heads * (key_len + value_len) * F16_BYTES


def estimate(weights: Path, config: dict[str, Any], num_ctx: int, num_parallel: int) -> int:
    return (weights.stat().st_size + kv_bytes_per_token(config) * num_ctx * num_parallel
            + GRAPH_OVERHEAD)


def available() -> int:
    """MemAvailable from /proc/meminfo; a large number where that cannot be read."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 1 << 62
