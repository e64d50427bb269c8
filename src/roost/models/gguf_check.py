"""Refuse a malformed GGUF file before any runner sees it, in bounded time and memory.

llama.cpp parses a GGUF header itself, but what it makes of a malformed one differs between
its versions (an allocation of whatever size the header claims, a failed load long after the
upload, at worst a crash), and its errors reach a client as a failed load. This walk checks
the structure first, so a bad file is a clear 400 when it enters the store or becomes a model.

It reads only the header, through a memory map, with `struct` at offsets: strings and scalar
arrays are skipped, never read, nothing is allocated in proportion to a count the file claims,
and every count is capped absolutely and by the bytes left in the file, so the time is bounded
by the header's real size. The rules are llama.cpp's (ggml/src/gguf.cpp, and the model loader's
"tensor data is not within the file bounds"), with caps no real model comes near.
"""

from __future__ import annotations

import mmap
import struct
from dataclasses import dataclass
from pathlib import Path

from gguf import GGML_QUANT_SIZES, GGMLQuantizationType, GGUFValueType

MAGIC = b"GGUF"
VERSION = 3  # the newest llama.cpp reads; 2 differs only in what 3 added (endianness)
DEFAULT_ALIGNMENT = 32
MAX_KEYS = 1 << 14  # real models have tens
MAX_KEY_BYTES = 1 << 10
MAX_TENSORS = 1 << 16  # real models have hundreds, the largest a few thousand
MAX_NAME_BYTES = 63  # GGML_MAX_NAME is 64 with its NUL
MAX_DIMS = 4
MAX_STRING_BYTES = 1 << 30  # llama.cpp's GGUF_MAX_STRING_LENGTH
MAX_ARRAY_STRINGS = 1 << 22  # strings in all arrays together; a vocabulary and its merges: < 1M
_INT64_MAX = (1 << 63) - 1
_SIZE_MAX = (1 << 64) - 1
# The least bytes a key-value pair (8-byte length, a 1-byte key, a 4-byte type, a 1-byte value)
# and a tensor's info (8-byte length, a 1-byte name, 4-byte n_dims, 4-byte type, 8-byte offset)
# take, so a count can be held against the file's size before any of it is walked.
_MIN_KV = 14
_MIN_TENSOR = 25
_SCALAR_SIZES: dict[int, int] = {
    GGUFValueType.UINT8: 1, GGUFValueType.INT8: 1, GGUFValueType.UINT16: 2,
    GGUFValueType.INT16: 2, GGUFValueType.UINT32: 4, GGUFValueType.INT32: 4,
    GGUFValueType.FLOAT32: 4, GGUFValueType.BOOL: 1, GGUFValueType.UINT64: 8,
    GGUFValueType.INT64: 8, GGUFValueType.FLOAT64: 8,
}
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")


class InvalidGGUF(ValueError):
    """The file is not a GGUF llama.cpp can load; the message is one line for the client."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"invalid GGUF: {reason}")


@dataclass(frozen=True)
class Layout:
    """What the walk found: enough for a caller (or a test) to know where each part lies."""

    version: int
    n_kv: int
    n_tensors: int
    alignment: int
    tensor_info_offset: int  # where the tensor infos start, after the key-value pairs
    data_offset: int  # where the tensor data starts
    data_end: int  # the end of the last tensor's bytes


def is_gguf(path: Path) -> bool:
    """Whether the file says it is a GGUF (its magic), so an upload can be checked as one."""
    with path.open("rb") as f:
        return f.read(4) == MAGIC


def check_upload(path: Path) -> None:
    """An uploaded blob that says it is a GGUF must be a sound one; other blobs (a template, a
    projector in another format) are not judged here, but at create time if named as weights."""
    if is_gguf(path):
        check(path)


def check(path: Path) -> Layout:
    """Walk the header of `path`; raise InvalidGGUF naming the first thing that is wrong."""
    size = path.stat().st_size
    if size == 0:
        raise InvalidGGUF("the file is empty")
    with path.open("rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
        return _Walk(buf, size).run()


def _show(raw: bytes) -> str:
    """A name from the file, fit for a one-line message."""
    text = raw.decode("utf-8", errors="replace")
    text = "".join(c if c.isprintable() else "?" for c in text)
    return text if len(text) <= 64 else text[:64] + "…"


def _pad(n: int, alignment: int) -> int:
    return (n + alignment - 1) // alignment * alignment


@dataclass
class _Tensor:
    name: str
    offset: int
    nbytes: int


class _Walk:
    """One pass over the header; `pos` only moves forward, and every read is bounds-checked."""

    def __init__(self, buf: mmap.mmap, size: int) -> None:
        self.buf = buf
        self.size = size
        self.pos = 0
        self.alignment = DEFAULT_ALIGNMENT
        self.array_strings = 0

    # -- reading ------------------------------------------------------------------------

    def _need(self, n: int, what: str) -> None:
        if n > self.size - self.pos:
            raise InvalidGGUF(f"the file ends inside {what} (truncated at byte {self.size})")

    def u32(self, what: str) -> int:
        self._need(4, what)
        value: int = _U32.unpack_from(self.buf, self.pos)[0]
        self.pos += 4
        return value

    def u64(self, what: str) -> int:
        self._need(8, what)
        value: int = _U64.unpack_from(self.buf, self.pos)[0]
        self.pos += 8
        return value

    def string_length(self, what: str) -> int:
        n = self.u64(f"the length of {what}")
        if n > MAX_STRING_BYTES:
            raise InvalidGGUF(f"{what} claims {n} bytes, more than the {MAX_STRING_BYTES} allowed")
        self._need(n, what)
        return n

    def text(self, what: str, limit: int) -> bytes:
        n = self.string_length(what)
        if n > limit:
            raise InvalidGGUF(f"{what} is {n} bytes long; at most {limit} are allowed")
        raw = self.buf[self.pos:self.pos + n]
        self.pos += n
        return raw

    def skip_string(self, what: str) -> None:
        n = self.string_length(what)  # moves past the length first
        self.pos += n

    # -- the parts ----------------------------------------------------------------------

    def run(self) -> Layout:
        version, n_tensors, n_kv = self.header()
        seen: set[bytes] = set()
        for i in range(n_kv):
            self.kv(i, seen)
        info_offset = self.pos
        names: set[bytes] = set()
        tensors = [self.tensor(i, names) for i in range(n_tensors)]
        data_offset = _pad(self.pos, self.alignment) if n_tensors else self.pos
        if data_offset > self.size:
            raise InvalidGGUF(f"the data section would start at byte {data_offset}, past the end "
                              f"of the file ({self.size} bytes)")
        data_end = self.data(tensors, data_offset)
        return Layout(version, n_kv, n_tensors, self.alignment, info_offset, data_offset, data_end)

    def header(self) -> tuple[int, int, int]:
        self._need(4, "the magic number")
        if self.buf[0:4] != MAGIC:
            raise InvalidGGUF(f"the file does not start with 'GGUF' (it starts with {self.buf[0:4]!r})")
        self.pos = 4
        version = self.u32("the version")
        if version & 0xFFFF == 0:
            raise InvalidGGUF(f"version {version} looks byte-swapped: big-endian files are not supported")
        if not 2 <= version <= VERSION:
            raise InvalidGGUF(f"version {version} is not supported (2 and 3 are)")
        n_tensors = self.u64("the tensor count")
        n_kv = self.u64("the key-value count")
        if n_tensors > MAX_TENSORS:
            raise InvalidGGUF(f"the header claims {n_tensors} tensors; at most {MAX_TENSORS} are allowed")
        if n_kv > MAX_KEYS:
            raise InvalidGGUF(f"the header claims {n_kv} key-value pairs; at most {MAX_KEYS} are allowed")
        if self.pos + n_kv * _MIN_KV + n_tensors * _MIN_TENSOR > self.size:
            raise InvalidGGUF(f"the header claims {n_kv} key-value pairs and {n_tensors} tensors, "
                              f"more than a file of {self.size} bytes can hold")
        return version, n_tensors, n_kv

    def kv(self, i: int, seen: set[bytes]) -> None:
        raw = self.text(f"key {i}", MAX_KEY_BYTES)
        if not raw:
            raise InvalidGGUF(f"key {i} is empty")
        key = _show(raw)
        if raw in seen:
            raise InvalidGGUF(f"duplicate key '{key}'")
        seen.add(raw)
        vtype = self.u32(f"the type of key '{key}'")
        if key == "general.alignment":
            self.alignment_value(vtype)
        elif vtype == GGUFValueType.ARRAY:
            etype = self.u32(f"the element type of key '{key}'")
            count = self.u64(f"the length of key '{key}'")
            self.array(key, etype, count)
        elif vtype == GGUFValueType.STRING:
            self.skip_string(f"the value of key '{key}'")
        elif vtype in _SCALAR_SIZES:
            self._need(_SCALAR_SIZES[vtype], f"the value of key '{key}'")
            self.pos += _SCALAR_SIZES[vtype]
        else:
            raise InvalidGGUF(f"key '{key}' has invalid value type {vtype}")

    def alignment_value(self, vtype: int) -> None:
        if vtype != GGUFValueType.UINT32:
            raise InvalidGGUF(f"key 'general.alignment' must be a uint32, not value type {vtype}")
        alignment = self.u32("the value of key 'general.alignment'")
        if alignment == 0 or alignment & (alignment - 1):
            raise InvalidGGUF(f"alignment {alignment} is not a power of two")
        self.alignment = alignment

    def array(self, key: str, etype: int, count: int) -> None:
        if etype == GGUFValueType.STRING:
            self._need_elements(key, count, 8)
            self.array_strings += count
            if self.array_strings > MAX_ARRAY_STRINGS:
                raise InvalidGGUF(f"key '{key}' brings the strings in arrays past {MAX_ARRAY_STRINGS}")
            self.skip_strings(key, count)
        elif etype in _SCALAR_SIZES:
            self._need_elements(key, count, _SCALAR_SIZES[etype])
            self.pos += count * _SCALAR_SIZES[etype]
        else:
            raise InvalidGGUF(f"key '{key}' is an array of invalid element type {etype}")

    def skip_strings(self, key: str, count: int) -> None:
        """The hot loop (a vocabulary is 150k strings and more): no call, no message per string."""
        buf, size, pos, unpack = self.buf, self.size, self.pos, _U64.unpack_from
        for j in range(count):
            if pos + 8 > size:
                self.pos = pos
                self.skip_string(f"element {j} of key '{key}'")  # raises, naming the element
            n = unpack(buf, pos)[0]
            if n > MAX_STRING_BYTES or pos + 8 + n > size:
                self.pos = pos
                self.skip_string(f"element {j} of key '{key}'")
            pos += 8 + n
        self.pos = pos

    def _need_elements(self, key: str, count: int, least: int) -> None:
        if count * least > self.size - self.pos:
            raise InvalidGGUF(f"key '{key}' claims {count} elements, more than the rest of the "
                              f"file holds (truncated at byte {self.size}?)")

    def tensor(self, i: int, names: set[bytes]) -> _Tensor:
        raw = self.text(f"the name of tensor {i}", MAX_NAME_BYTES)
        name = _show(raw)
        if raw in names:
            raise InvalidGGUF(f"duplicate tensor name '{name}'")
        names.add(raw)
        n_dims = self.u32(f"the dimension count of tensor '{name}'")
        if n_dims > MAX_DIMS:
            raise InvalidGGUF(f"tensor '{name}' has {n_dims} dimensions; at most {MAX_DIMS} are allowed")
        shape = [self.u64(f"the shape of tensor '{name}'") for _ in range(n_dims)]
        elements = _elements(name, shape)
        ggml_type = self.u32(f"the type of tensor '{name}'")
        nbytes = _nbytes(name, shape, elements, ggml_type)
        offset = self.u64(f"the data offset of tensor '{name}'")
        return _Tensor(name, offset, nbytes)

    def data(self, tensors: list[_Tensor], data_offset: int) -> int:
        """Tensors follow one another in order, aligned, and each lies within the file."""
        expected = 0
        for t in tensors:
            if t.offset != expected:
                raise InvalidGGUF(f"tensor '{t.name}' has data offset {t.offset}, expected {expected} "
                                  f"(tensors follow one another, each padded to {self.alignment} bytes)")
            end = data_offset + t.offset + t.nbytes
            if end > self.size:
                raise InvalidGGUF(f"tensor '{t.name}' extends past the end of the file "
                                  f"(to byte {end} of {self.size})")
            expected += _pad(t.nbytes, self.alignment)
        return data_offset + (tensors[-1].offset + tensors[-1].nbytes if tensors else 0)


def _elements(name: str, shape: list[int]) -> int:
    elements = 1
    for n in shape:
        if n == 0 or n > _INT64_MAX:
            shown = n if n <= _INT64_MAX else n - (1 << 64)
            raise InvalidGGUF(f"tensor '{name}' has a dimension of {shown}; each must be positive")
        elements *= n
        if elements >= _INT64_MAX:
            raise InvalidGGUF(f"tensor '{name}' with shape {tuple(shape)} has too many elements "
                              "(the count overflows 64 bits)")
    return elements


def _nbytes(name: str, shape: list[int], elements: int, ggml_type: int) -> int:
    try:
        block, type_size = GGML_QUANT_SIZES[GGMLQuantizationType(ggml_type)]
    except (ValueError, KeyError):
        raise InvalidGGUF(f"tensor '{name}' has unknown type {ggml_type}") from None
    row = shape[0] if shape else 1
    if row % block:
        raise InvalidGGUF(f"tensor '{name}' has {row} elements per row, not a multiple of its "
                          f"type's block of {block}")
    nbytes = elements // block * type_size
    if nbytes > _SIZE_MAX:
        raise InvalidGGUF(f"tensor '{name}' with shape {tuple(shape)} has a size that overflows 64 bits")
    return nbytes
