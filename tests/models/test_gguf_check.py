"""The GGUF pre-check on the real model's header and on malformed copies of it.

Every malformed file is the real qwen2.5-coder:0.5b header with one thing broken (see
tests/support/gguf_files.py); each must be refused with a one-line reason, quickly, without
allocating what the file claims. The real model, and gemma3:270m, must pass.
"""

from __future__ import annotations

import re
import struct
import time
import tracemalloc
from collections.abc import Callable, Iterable
from pathlib import Path

import pytest
from gguf import GGMLQuantizationType, GGUFValueType

from roost.models import catalog, gguf_check
from roost.models.gguf_check import InvalidGGUF
from roost.models.names import Name
from tests.support import gguf_files
from tests.support.gguf_files import Tensor, header, kv, real_header, string, u32_kv, with_tensor, write

TIME_LIMIT = 1.0  # seconds, per file
MEMORY_LIMIT = 4 << 20  # bytes the check may allocate (tracemalloc's peak), per file


def _peak_allocated(check: Callable[[], object]) -> int:
    """What the check allocates at its peak (tracemalloc slows it ~10x: timed separately)."""
    tracemalloc.start()
    try:
        check()
    except InvalidGGUF:
        pass
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak


def refused(path: Path, *words: str, memory: bool = True) -> str:
    """Check `path`; it must be refused in bounded time and memory with a one-line reason."""
    started = time.perf_counter()
    with pytest.raises(InvalidGGUF) as err:
        gguf_check.check(path)
    elapsed = time.perf_counter() - started
    message = str(err.value)
    assert message.startswith("invalid GGUF: ") and "\n" not in message, message
    assert all(w in message for w in words), message
    assert elapsed < TIME_LIMIT, (elapsed, message)
    if memory:
        assert _peak_allocated(lambda: gguf_check.check(path)) < MEMORY_LIMIT, message
    return message


def test_the_real_models_pass_in_bounded_time_and_memory(tmp_path: Path) -> None:
    """The whole walk, vocabularies included; memory measured once (tracemalloc is slow)."""
    for name in ("qwen2.5-coder:0.5b", "gemma3:270m"):
        entry = catalog.find(Name.parse(name))
        assert entry is not None
        path = tmp_path / "model.gguf"
        with catalog.part_paths(entry)[0].open("rb") as src:  # the header, then a hole
            write(path, src.read(32 << 20), entry.size - (32 << 20))
        started = time.perf_counter()
        layout = gguf_check.check(path)
        elapsed = time.perf_counter() - started
        assert layout.data_end == entry.size and layout.n_tensors > 100, layout
        assert elapsed < TIME_LIMIT, (name, elapsed)
        if name == "qwen2.5-coder:0.5b":
            peak = _peak_allocated(lambda: gguf_check.check(path))  # noqa: B023
            assert peak < MEMORY_LIMIT, peak


def test_the_rebuilt_real_header_is_byte_for_byte_the_real_one(tmp_path: Path) -> None:
    real = real_header()
    assert header(real.kv, real.layout.n_kv, real.tensors) == real.raw
    assert gguf_check.check(gguf_files.real_model(tmp_path / "m.gguf")) == real.layout


def test_an_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.gguf"
    path.touch()
    refused(path, "empty")


def _prefixes(raw: bytes, lengths: Iterable[int], path: Path) -> set[str]:
    """Refuse every prefix of `raw` of these lengths; return the reasons, numbers left out."""
    reasons = set()
    for n in sorted(set(lengths)):
        if 0 < n < len(raw):
            path.write_bytes(raw[:n])
            reasons.add(re.sub(r"[0-9]+", "N", refused(path, memory=False)))
    return reasons


def test_every_prefix_of_the_real_header_start(tmp_path: Path) -> None:
    """The magic, version, counts, the 17 keys before the vocabulary and its first tokens.

    The real counts (26 keys, 291 tensors) need 7.6 kB at least, so past the first 24 bytes
    each of these is refused by that rule alone; the next test walks the same keys."""
    reasons = _prefixes(real_header().raw, range(1, 861), tmp_path / "p.gguf")
    assert reasons == {
        "invalid GGUF: the file ends inside the magic number (truncated at byte N)",
        "invalid GGUF: the file ends inside the version (truncated at byte N)",
        "invalid GGUF: the file ends inside the tensor count (truncated at byte N)",
        "invalid GGUF: the file ends inside the key-value count (truncated at byte N)",
        "invalid GGUF: the header claims N key-value pairs and N tensors, more than a file of "
        "N bytes can hold",
    }


def test_every_prefix_of_the_real_keys_and_tensor_infos(tmp_path: Path) -> None:
    """The real keys up to the vocabulary and the real first three tensor infos, as a header
    of its own (17 keys, 3 tensors): every prefix, each truncation met by the walk itself."""
    keys, n_keys = gguf_files.keys_before_vocabulary()
    raw = header(keys, n_keys, real_header().tensors[:3])
    reasons = _prefixes(raw, range(1, len(raw)), tmp_path / "p.gguf")
    assert len(raw) > 900 and len(reasons) > 12, reasons
    for part in ("the length of key N", "key N (", "the type of key 'tokenizer.ggml.model'",
                 "the value of key 'qwenN.rope.freq_base'", "the name of tensor N",
                 "the dimension count of tensor 'output.weight'", "the shape of tensor",
                 "the type of tensor 'blk.N.attn_norm.weight'", "the data offset of tensor"):
        assert any(f"ends inside {part}" in r for r in reasons), (part, reasons)
    assert any("the data section would start at byte N" in r for r in reasons), reasons


def test_prefixes_at_each_later_part_of_the_real_header(tmp_path: Path) -> None:
    """Each later key's start, the vocabulary's middle, the tensor infos and the data's start.
    These walk the 300k vocabulary and merge strings, so they are sampled, not all taken."""
    real = real_header()
    marks = [real.raw.find(string(key.encode())) for key in (
        "tokenizer.ggml.token_type", "tokenizer.ggml.merges", "tokenizer.ggml.eos_token_id",
        "tokenizer.chat_template", "general.quantization_version")]
    assert all(m > 0 for m in marks)
    info = real.layout.tensor_info_offset
    lengths = [m + d for m in marks for d in (-1, 1, 30)]
    lengths += [1_300_000, 4_500_000, info, info + 7, info + 30, real.layout.data_offset - 1]
    reasons = _prefixes(real.raw, lengths, tmp_path / "p.gguf")
    assert any("element N of key 'tokenizer.ggml.tokens'" in r for r in reasons), reasons
    assert any("element N of key 'tokenizer.ggml.merges'" in r for r in reasons), reasons
    path = write(tmp_path / "header-only.gguf", real.raw, 0)
    refused(path, "tensor 'output.weight' extends past the end of the file", memory=False)


def _file(tmp_path: Path, head: bytes) -> Path:
    return write(tmp_path / "bad.gguf", head, real_header().data_size)


def _real(**kwargs: object) -> bytes:
    real = real_header()
    tensors: tuple[Tensor, ...] = kwargs.pop("tensors", real.tensors)  # type: ignore[assignment]
    kv_section: bytes = kwargs.pop("kv", real.kv)  # type: ignore[assignment]
    n_kv: int = kwargs.pop("n_kv", real.layout.n_kv)  # type: ignore[assignment]
    return header(kv_section, n_kv, tensors, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(("head", "words"), [
    (lambda: b"GGML" + _real()[4:], ["does not start with 'GGUF'"]),
    (lambda: _real(version=1), ["version 1 is not supported"]),
    (lambda: _real(version=4), ["version 4 is not supported"]),
    (lambda: _real(version=3 << 24), ["byte-swapped"]),
    (lambda: _real(n_tensors=(1 << 64) - 1), ["tensors; at most"]),
    (lambda: _real(n_kv=1 << 63), ["key-value pairs; at most"]),
    (lambda: _short(n_kv=18), []),  # reads the first tensor info as a key, then garbage
    (lambda: _short(n_kv=16), []),  # reads the last key as a tensor info
], ids=["magic", "version-1", "version-4", "big-endian", "tensor-count", "key-count",
        "one-key-too-many", "one-key-too-few"])
def test_a_broken_preamble(tmp_path: Path, head: Callable[[], bytes], words: list[str]) -> None:
    refused(_file(tmp_path, head()), *words)


def _short(**kwargs: object) -> bytes:
    """The real header with only the keys before the vocabulary: checked in milliseconds."""
    keys, n_keys = gguf_files.keys_before_vocabulary()
    return _real(**{"kv": keys, "n_kv": n_keys, **kwargs})


def _keys(*extra: bytes) -> tuple[bytes, int]:
    real = real_header()
    return b"".join(extra) + real.kv, real.layout.n_kv + len(extra)


def _array(key: str, etype: int, count: int, payload: bytes = b"") -> bytes:
    return kv(key, GGUFValueType.ARRAY, struct.pack("<IQ", etype, count) + payload)


@pytest.mark.parametrize(("extra", "words"), [
    (u32_kv("general.alignment", 0), ["alignment 0 is not a power of two"]),
    (u32_kv("general.alignment", 48), ["alignment 48 is not a power of two"]),
    (kv("general.alignment", GGUFValueType.UINT64, struct.pack("<Q", 32)), ["must be a uint32"]),
    (_array("general.alignment", GGUFValueType.UINT32, 1, struct.pack("<I", 32)),
     ["must be a uint32, not value type 9"]),
    (kv("x.bad", 13, b""), ["key 'x.bad' has invalid value type 13"]),
    (kv("", GGUFValueType.UINT8, b"\0"), ["key 0 is empty"]),
    (kv("x" * 2000, GGUFValueType.UINT8, b"\0"), ["key 0 is 2000 bytes long"]),
    (kv("general.architecture", GGUFValueType.STRING, string(b"qwen2")), ["duplicate key"]),
    (kv("x.s", GGUFValueType.STRING, struct.pack("<Q", 1 << 40)), ["claims 1099511627776 bytes"]),
    (kv("x.s", GGUFValueType.STRING, struct.pack("<Q", 500_000_000)), ["the file ends inside"]),
    (_array("x.a", GGUFValueType.ARRAY, 1), ["array of invalid element type 9"]),
    (_array("x.a", 99, 1), ["array of invalid element type 99"]),
    (_array("x.a", GGUFValueType.UINT64, 1 << 61), ["claims 2305843009213693952 elements"]),
    (_array("x.a", GGUFValueType.STRING, 1 << 40), ["claims 1099511627776 elements"]),
    (_array("x.a", GGUFValueType.STRING, 1 << 23), ["brings the strings in arrays past"]),
    (_array("x.a", GGUFValueType.STRING, 2, string(b"ok") + struct.pack("<Q", 1 << 41)),
     ["element 1 of key 'x.a'"]),
], ids=["alignment-0", "alignment-48", "alignment-u64", "alignment-array", "value-type",
        "empty-key", "long-key", "duplicate-key", "string-1TiB", "string-past-end", "nested-array",
        "array-type", "array-count", "string-array-count", "too-many-strings", "string-in-array-past-end"])
def test_a_broken_key(tmp_path: Path, extra: bytes, words: list[str]) -> None:
    kv_section, n_kv = _keys(extra)
    refused(_file(tmp_path, _real(kv=kv_section, n_kv=n_kv)), *words)


def test_counts_the_file_cannot_hold(tmp_path: Path) -> None:
    """Within the absolute caps, but more than a 300-byte file has room for."""
    path = tmp_path / "tiny.gguf"
    tiny = gguf_files.tiny()
    path.write_bytes(tiny[:8] + struct.pack("<QQ", 60_000, 16_000) + tiny[24:])
    refused(path, "claims 16000 key-value pairs and 60000 tensors, more than a file of")


def test_a_sound_alignment_key_passes(tmp_path: Path) -> None:
    """general.alignment 64: the tensors laid out again, each padded to 64 bytes."""
    kv_section, n_kv = _keys(u32_kv("general.alignment", 64))
    tensors, offset = [], 0
    for t in real_header().tensors:
        tensors.append(Tensor(t.name, t.shape, t.ggml_type, offset))
        offset += -(-t.nbytes // 64) * 64
    head = header(kv_section, n_kv, tensors, alignment=64)
    layout = gguf_check.check(write(tmp_path / "a.gguf", head, offset))
    assert layout.alignment == 64 and layout.data_offset % 64 == 0


Q4_K = GGMLQuantizationType.Q4_K


@pytest.mark.parametrize(("tensors", "words"), [
    (lambda: with_tensor(5, shape=(1 << 32, 1 << 32)), ["too many elements"]),
    (lambda: with_tensor(5, shape=(896, 1 << 40, 1 << 40)), ["too many elements"]),
    (lambda: with_tensor(5, shape=(896, (1 << 64) - 1)), ["a dimension of -1"]),
    (lambda: with_tensor(5, shape=(896, 0)), ["a dimension of 0"]),
    (lambda: with_tensor(5, shape=(1, 1, 1, 1, 1)), ["5 dimensions"]),
    (lambda: with_tensor(5, ggml_type=99), ["unknown type 99"]),
    (lambda: with_tensor(5, ggml_type=4), ["unknown type 4"]),  # Q4_2, long removed
    (lambda: with_tensor(5, ggml_type=Q4_K, shape=(100, 896)), ["not a multiple of its type's block"]),
    (lambda: with_tensor(5, name=b"x" * 64), ["is 64 bytes long; at most 63"]),
    (lambda: with_tensor(5, name=real_header().tensors[4].name), ["duplicate tensor name"]),
    (lambda: with_tensor(5, offset=real_header().tensors[5].offset + 32), ["expected"]),
    (lambda: with_tensor(290, offset=1 << 62), ["tensor 'output_norm.weight' has data offset"]),
    (lambda: with_tensor(290, shape=(896 * 64,)), ["'output_norm.weight' extends past the end"]),
], ids=["overflow-2d", "overflow-3d", "negative-dim", "zero-dim", "five-dims", "type-99",
        "removed-type", "partial-block", "long-name", "duplicate-name", "gap", "offset-past-end",
        "size-past-end"])
def test_a_broken_tensor(tmp_path: Path, tensors: Callable[[], tuple[Tensor, ...]],
                         words: list[str]) -> None:
    refused(_file(tmp_path, _short(tensors=tensors())), *words)


def test_a_truncated_model(tmp_path: Path) -> None:
    """One byte short of the real file: the last tensor no longer fits."""
    real = real_header()
    path = write(tmp_path / "short.gguf", real.raw, real.data_size - 1)
    refused(path, "tensor 'output_norm.weight' extends past the end of the file", memory=False)


def test_a_tiny_sound_file_passes_and_a_text_file_is_no_gguf(tmp_path: Path) -> None:
    tiny = tmp_path / "tiny.gguf"
    tiny.write_bytes(gguf_files.tiny())
    assert gguf_check.check(tiny).n_tensors == 1
    gguf_check.check_upload(tiny)
    text = tmp_path / "template.txt"
    text.write_text("{{ .Prompt }}")
    assert not gguf_check.is_gguf(text)
    gguf_check.check_upload(text)  # not a GGUF: not judged at upload
    refused(text, "does not start with 'GGUF'")
