"""GGUF files for the malformed-file tests, made from the real bundled model's header.

The real qwen2.5-coder:0.5b header (its 26 keys and 291 tensor infos) is read from the
installed part package, taken apart into its key-value section and its tensor infos, and put
back together with one thing changed. The tensor data section is left sparse (a hole of the
right size): the check reads only the header, so a file with the real header and a hole where
the weights were is, structurally, the real model, and costs no disk or time to make.
"""

from __future__ import annotations

import functools
import os
import struct
from dataclasses import dataclass, replace
from pathlib import Path

from gguf import GGML_QUANT_SIZES, GGMLQuantizationType, GGUFValueType

from roost.models import catalog, gguf_check
from roost.models.names import Name

MODEL = "qwen2.5-coder:0.5b"


@dataclass(frozen=True)
class Tensor:
    name: bytes
    shape: tuple[int, ...]
    ggml_type: int
    offset: int

    def info(self) -> bytes:
        return (string(self.name) + struct.pack("<I", len(self.shape))
                + b"".join(struct.pack("<Q", n) for n in self.shape)
                + struct.pack("<IQ", self.ggml_type, self.offset))

    @property
    def nbytes(self) -> int:
        block, size = GGML_QUANT_SIZES[GGMLQuantizationType(self.ggml_type)]
        elements = 1
        for n in self.shape:
            elements *= n
        return elements // block * size


@dataclass(frozen=True)
class RealHeader:
    raw: bytes  # the real file's bytes up to its data section
    layout: gguf_check.Layout
    kv: bytes  # the key-value section, as in the file
    tensors: tuple[Tensor, ...]
    size: int  # the real file's size

    @property
    def data_size(self) -> int:
        return self.size - self.layout.data_offset


def string(data: bytes) -> bytes:
    return struct.pack("<Q", len(data)) + data


def kv(key: str, vtype: int, payload: bytes) -> bytes:
    """One key-value pair; `payload` is the value's bytes as the file holds them."""
    return string(key.encode()) + struct.pack("<I", vtype) + payload


def u32_kv(key: str, value: int) -> bytes:
    return kv(key, GGUFValueType.UINT32, struct.pack("<I", value))


def header(kv_section: bytes, n_kv: int, tensors: tuple[Tensor, ...] | list[Tensor], *,
           alignment: int = 32, version: int = 3, n_tensors: int | None = None) -> bytes:
    """A whole header, padded to `alignment` (when it is a usable one) where the data starts."""
    head = (gguf_check.MAGIC + struct.pack("<IQQ", version, len(tensors) if n_tensors is None
                                           else n_tensors, n_kv)
            + kv_section + b"".join(t.info() for t in tensors))
    if alignment > 0 and alignment & (alignment - 1) == 0:
        head += b"\0" * (-len(head) % alignment)
    return head


def write(path: Path, head: bytes, data_size: int) -> Path:
    """`head`, then a sparse data section of `data_size` bytes."""
    with path.open("wb") as out:
        out.write(head)
    os.truncate(path, len(head) + data_size)
    return path


@functools.cache
def real_header() -> RealHeader:
    entry = catalog.find(Name.parse(MODEL))
    assert entry is not None
    first = catalog.part_paths(entry)[0]
    probe = Path(os.environ.get("TMPDIR", "/tmp")) / f"roost-gguf-probe-{os.getpid()}.gguf"
    try:
        with first.open("rb") as src:
            write(probe, src.read(16 << 20), entry.size - (16 << 20))
        layout = gguf_check.check(probe)
    finally:
        probe.unlink(missing_ok=True)
    with first.open("rb") as src:
        raw = src.read(layout.data_offset)
    tensors = _tensors(raw, layout.tensor_info_offset, layout.n_tensors)
    return RealHeader(raw, layout, raw[24:layout.tensor_info_offset], tuple(tensors), entry.size)


def _tensors(raw: bytes, pos: int, count: int) -> list[Tensor]:
    out = []
    for _ in range(count):
        (n,) = struct.unpack_from("<Q", raw, pos)
        name = raw[pos + 8:pos + 8 + n]
        pos += 8 + n
        (dims,) = struct.unpack_from("<I", raw, pos)
        shape = struct.unpack_from(f"<{dims}Q", raw, pos + 4)
        pos += 4 + 8 * dims
        ggml_type, offset = struct.unpack_from("<IQ", raw, pos)
        pos += 12
        out.append(Tensor(name, tuple(shape), ggml_type, offset))
    return out


def keys_before_vocabulary() -> tuple[bytes, int]:
    """The real header's first 17 keys (general.*, qwen2.*, the tokenizer's model and pre),
    which stop before its 150k-token vocabulary: a header made of these and the real tensor
    infos is checked in milliseconds, where the whole one takes ~0.2 s."""
    real = real_header()
    end = real.raw.find(string(b"tokenizer.ggml.tokens")) - 24
    return real.kv[:end], 17


def real_model(path: Path) -> Path:
    """The real model, rebuilt from its parts: its header and a hole where the weights were."""
    real = real_header()
    return write(path, header(real.kv, real.layout.n_kv, real.tensors), real.data_size)


def with_tensor(index: int, **changes: object) -> tuple[Tensor, ...]:
    """The real tensor infos with tensor `index` changed."""
    tensors = list(real_header().tensors)
    tensors[index] = replace(tensors[index], **changes)  # type: ignore[arg-type]
    return tuple(tensors)


def tiny(arch: str = "qwen2") -> bytes:
    """A small, structurally sound GGUF (two keys, one 8-float tensor) that no runner can load:
    it lacks every key and tensor a real architecture needs."""
    arch_kv = kv("general.architecture", GGUFValueType.STRING, string(arch.encode()))
    tensor = Tensor(b"token_embd.weight", (8,), GGMLQuantizationType.F32, 0)
    head = header(arch_kv + u32_kv("general.alignment", 32), 2, [tensor])
    return head + b"\0" * tensor.nbytes
