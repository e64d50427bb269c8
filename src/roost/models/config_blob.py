"""A model's config blob: what /api/show, /api/tags and the loader need, read from GGUF once.

Ollama keeps family, parameter size and quantization in the manifest's config blob; Roost
adds the GGUF's scalar metadata (`model_info`) and the BOS/EOS token texts the chat
template needs, so nothing has to re-read the weights to describe or prompt a model.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from roost.models import gguf_meta


def build(weights: Path) -> tuple[dict[str, Any], str | None]:
    """Return the config document and the GGUF's own chat template, if it has one."""
    meta, tokens = gguf_meta.read(weights)
    template = meta.kv.pop("tokenizer.chat_template", None)
    arch = meta.architecture
    embedding_only = meta.kv.get(f"{arch}.pooling_type") is not None and "causal" not in arch
    capabilities = ["embedding"] if embedding_only else ["completion"]
    if template and "tools" in template:
        capabilities.append("tools")
    if template and "<think>" in template:
        capabilities.append("thinking")
    config = {
        "model_format": "gguf",
        "model_family": arch,
        "model_families": [arch],
        "model_type": meta.parameter_size,
        "file_type": meta.quantization,
        "architecture": arch,
        "parameter_count": meta.n_params,
        "context_length": meta.arch_value("context_length"),
        "embedding_length": meta.arch_value("embedding_length"),
        "bos_token": meta.token_text("tokenizer.ggml.bos_token_id", tokens),
        "eos_token": meta.token_text("tokenizer.ggml.eos_token_id", tokens),
        "capabilities": capabilities,
        **({"fim": fim} if (fim := fim_tokens(meta, tokens)) and not embedding_only else {}),
        "model_info": {"general.parameter_count": meta.n_params, **meta.kv},
        "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": []},
    }
    return config, template if isinstance(template, str) else None


# Fill-in-the-middle token texts as the code models' vocabularies spell them (prefix, suffix,
# middle), with the spacing their training put around them; the first a vocabulary holds wins.
FIM_STYLES = (
    ("<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>"),  # Qwen2.5-Coder, StarCoder2 chat
    ("<fim_prefix>", "<fim_suffix>", "<fim_middle>"),  # StarCoder, SantaCoder
    ("<fim-prefix>", "<fim-suffix>", "<fim-middle>"),
    ("<｜fim▁begin｜>", "<｜fim▁hole｜>", "<｜fim▁end｜>"),  # DeepSeek-Coder
    ("<PRE>", "<SUF>", "<MID>"),  # Code Llama
)
_FIM_KEYS = ("tokenizer.ggml.fim_pre_token_id", "tokenizer.ggml.fim_suf_token_id",
             "tokenizer.ggml.fim_mid_token_id")


def fim_tokens(meta: gguf_meta.GGUFMeta, tokens: list[str] | None) -> list[str] | None:
    """The model's fill-in-the-middle markers (Ollama's `insert` capability), from the GGUF's
    fim token ids when it names them, else from the marker texts its vocabulary holds."""
    named = [meta.token_text(key, tokens) for key in _FIM_KEYS]
    if all(named):
        return named
    vocab = set(tokens or [])
    for style in FIM_STYLES:
        if all(t in vocab for t in style):
            pre, suf, mid = style
            return [pre + " ", " " + suf, " " + mid] if pre == "<PRE>" else list(style)
    return None


def encode(config: dict[str, Any]) -> bytes:
    return json.dumps(config, separators=(",", ":"), default=str).encode()


def details(config: dict[str, Any]) -> dict[str, Any]:
    """The `details` object of /api/tags, /api/show and /api/ps."""
    return {
        "parent_model": "",
        "format": config.get("model_format", "gguf"),
        "family": config.get("model_family", ""),
        "families": config.get("model_families") or [],
        "parameter_size": config.get("model_type", ""),
        "quantization_level": config.get("file_type", ""),
    }
