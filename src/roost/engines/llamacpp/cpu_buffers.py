"""Which CPU buffer types llama.cpp may keep weights in: all, all but AMX, or none.

llama.cpp's CPU backend offers "extra" buffer types besides plain memory: CPU_REPACK
(weights re-laid for the AVX2/AVX-512 and NEON kernels that make Q4 decoding fast) and, in
builds compiled on a CPU that advertises it, AMX. Inside a VM that advertises AMX without
granting it, the first matrix product on an AMX buffer dies with SIGSEGV. The runner therefore
loads in one of three modes, which the server chooses (and falls back through):

- `all`: llama.cpp's own choice, every extra buffer type (the fastest where it works);
- `no-amx`: extra buffer types off, but every weight the CPU_REPACK kernels can take is put
  there explicitly through `tensor_buft_overrides`, so only AMX is left out;
- `none`: extra buffer types off (llama-server's `--no-repack`): plain kernels only.
"""

from __future__ import annotations

import ctypes
import platform
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import llama_cpp._ggml as ggml

MODES = ("all", "no-amx", "none")
_CPU_DEVICE = 0  # GGML_BACKEND_DEVICE_TYPE_CPU

# Projections every llama.cpp architecture multiplies with (GGML_OP_MUL_MAT, 2-D weights):
# the only tensors CPU_REPACK may hold. token_embd (a row lookup) must never be repacked.
_MATMUL_WEIGHT = re.compile(
    r"^(output|blk\.\d+\.(attn_q|attn_k|attn_v|attn_qkv|attn_output|ffn_gate|ffn_up|ffn_down))\.weight$"
)
# ggml types with x86 repack kernels (ggml-cpu/repack.cpp), and the CPU feature each needs.
_REPACK_TYPES_X86 = {"Q4_0": "AVX2", "Q4_K": "AVX2", "IQ4_NL": "AVX2", "MXFP4": "AVX2",
                     "Q2_K": "AVX512"}


class _Feature(ctypes.Structure):
    _fields_ = [("name", ctypes.c_char_p), ("value", ctypes.c_char_p)]


class _Override(ctypes.Structure):
    """llama.cpp's `struct llama_model_tensor_buft_override { pattern; buft; }`."""

    _fields_ = [("pattern", ctypes.c_char_p), ("buft", ctypes.c_void_p)]


def _lib() -> Any:
    lib = ggml.libggml
    for name, res, args in (
        ("ggml_backend_dev_by_type", ctypes.c_void_p, [ctypes.c_int]),
        ("ggml_backend_dev_backend_reg", ctypes.c_void_p, [ctypes.c_void_p]),
        ("ggml_backend_reg_get_proc_address", ctypes.c_void_p, [ctypes.c_void_p, ctypes.c_char_p]),
        ("ggml_backend_buft_name", ctypes.c_char_p, [ctypes.c_void_p]),
    ):
        fn = getattr(lib, name)
        fn.restype, fn.argtypes = res, args
    return lib


def _cpu_proc(name: bytes) -> tuple[Any, Any, Any]:
    """The CPU backend's optional entry point `name`, with its device and registry."""
    lib = _lib()
    dev = lib.ggml_backend_dev_by_type(_CPU_DEVICE)
    reg = lib.ggml_backend_dev_backend_reg(dev) if dev else None
    return (lib.ggml_backend_reg_get_proc_address(reg, name) if reg else None), dev, reg


def extra_buffer_types() -> dict[str, int]:
    """The CPU device's extra buffer types in llama.cpp's order of preference: name -> handle."""
    proc, dev, _ = _cpu_proc(b"ggml_backend_dev_get_extra_bufts")
    if not proc:
        return {}
    array = ctypes.CFUNCTYPE(ctypes.POINTER(ctypes.c_void_p), ctypes.c_void_p)(proc)(dev)
    found: dict[str, int] = {}
    i = 0
    while array and array[i]:
        found[_lib().ggml_backend_buft_name(array[i]).decode()] = int(array[i])
        i += 1
    return found


def cpu_features() -> set[str]:
    """What this build of ggml's CPU backend was compiled for (AVX2, AVX512, AMX_INT8, ...)."""
    proc, _, reg = _cpu_proc(b"ggml_backend_get_features")
    if not proc:
        return set()
    feats = ctypes.CFUNCTYPE(ctypes.POINTER(_Feature), ctypes.c_void_p)(proc)(reg)
    names, i = set(), 0
    while feats[i].name:
        if feats[i].value and feats[i].value != b"0":
            names.add(feats[i].name.decode())
        i += 1
    return names


@dataclass
class Placement:
    """Model parameters for one mode; keeps the override array alive until the load ends."""

    use_extra_bufts: bool
    overrides: Any = None
    repacked: int = 0  # tensors placed in CPU_REPACK explicitly

    def apply(self, mparams: Any) -> None:
        mparams.use_extra_bufts = self.use_extra_bufts
        if self.overrides is not None:
            mparams.tensor_buft_overrides = ctypes.cast(self.overrides, ctypes.c_void_p)


def placement(mode: str, gguf_path: Path) -> Placement:
    if mode not in MODES:
        raise ValueError(f"unknown CPU kernel mode {mode!r} (one of {', '.join(MODES)})")
    if mode == "all":
        return Placement(True)
    if mode == "none" or platform.machine().lower() not in ("x86_64", "amd64"):
        # AMX exists only on x86-64; elsewhere "no-amx" is llama.cpp's own choice.
        return Placement(mode != "none")
    repack = extra_buffer_types().get("CPU_REPACK")
    names = _repackable(gguf_path, cpu_features()) if repack else []
    if not names:
        return Placement(False)
    array = (_Override * 2)()
    array[0].pattern, array[0].buft = _pattern(names).encode(), repack
    array[1].pattern, array[1].buft = None, None
    return Placement(False, array, len(names))


def _pattern(names: list[str]) -> str:
    """One short regex for the names: llama.cpp compiles it again for every tensor it loads,
    so `blk.(2|4|5).ffn_down.weight` rather than an alternation of every full name."""
    layers: dict[str, list[str]] = {}
    whole: list[str] = []
    for name in names:
        m = re.match(r"^blk\.(\d+)\.(.+)$", name)
        if m:
            layers.setdefault(m.group(2), []).append(m.group(1))
        else:
            whole.append(re.escape(name))
    parts = whole + [rf"blk\.({'|'.join(ids)})\.{re.escape(rest)}" for rest, ids in layers.items()]
    return "^(" + "|".join(parts) + ")$"


def _repackable(gguf_path: Path, features: set[str]) -> list[str]:
    """Weights CPU_REPACK would take on its own: 2-D matmul weights of a repackable type."""
    from roost.models.gguf_meta import read  # a fast header walk (gguf's reader takes seconds)

    meta, _ = read(gguf_path, want_tokens=False)
    return [t.name for t in meta.tensors
            if _REPACK_TYPES_X86.get(t.type_name) in features and _MATMUL_WEIGHT.match(t.name)
            and len(t.shape) == 2 and t.shape[1] % 8 == 0]


__all__ = ["MODES", "Placement", "cpu_features", "extra_buffer_types", "placement"]
