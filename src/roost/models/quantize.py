"""Quantize a model's weights into a new blob with llama.cpp's quantizer (`roost create -q`).

The quantizer is native code that runs for minutes on a large model and aborts the process on
some inputs, so it runs in a child process (roost.models.quantize_main): a crash fails this
create, never the server, and a client that goes away kills it. The child writes to a locked
temporary file in the blobs folder (so the store's sweep of leftovers leaves it alone while
it lives, and removes it if this process dies), reports each tensor it starts as a JSON line,
and the blob is stored through the store's one verified write path once it is whole.

Type names are Ollama's (Q4_K_M, Q8_0, ...); the numbers are llama.cpp's `llama_ftype`, which
the gguf package mirrors as LlamaFileType. Types that need an importance matrix (IQ*, Q2_K_S)
are not offered: without one llama.cpp refuses them or makes garbage.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import secrets
import selectors
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from gguf import GGML_QUANT_SIZES, GGMLQuantizationType, LlamaFileType

from roost.models import gguf_meta
from roost.models.durable import fsync_dir
from roost.models.store import Layer, Store, StoreError

# Each target type with its approximate bits per weight, so that a quantized source is only
# ever quantized down: quantizing Q4_K_M "up" to Q8_0 adds size and no precision.
BITS: dict[str, float] = {
    "Q2_K": 2.6, "Q3_K_S": 3.5, "Q3_K_M": 3.9, "Q3_K_L": 4.3, "Q4_0": 4.5, "Q4_K_S": 4.6,
    "Q4_K_M": 4.9, "Q4_1": 5.0, "Q5_0": 5.5, "Q5_K_S": 5.5, "Q5_K_M": 5.7, "Q5_1": 6.0,
    "Q6_K": 6.6, "Q8_0": 8.5, "F16": 16.0, "BF16": 16.0,
}
ALIASES = {"Q3_K": "Q3_K_M", "Q4_K": "Q4_K_M", "Q5_K": "Q5_K_M"}
# Sources any type may be made from, as Ollama allows (F32, F16, BF16), and Q8_0 as the issue asks.
FULL_SOURCES = ("F32", "F16", "BF16", "Q8_0")
PROGRESS_DIGEST = "0000000000000000000"  # Ollama's placeholder for a layer not yet hashed
_CHUNK = 1 << 20


class QuantizeError(ValueError):
    """The request cannot be done: an unknown type, or a source that cannot become it (400)."""


class QuantizeFailed(StoreError):
    """The quantizer died or was stopped; nothing was stored."""


def parse_type(name: str) -> str:
    """Ollama's spelling of a type, checked: `q4_k_m` -> `Q4_K_M`."""
    wanted = name.strip().upper()
    wanted = ALIASES.get(wanted, wanted)
    if wanted not in BITS:
        raise QuantizeError(f"unsupported quantization type {name!r}; supported types are "
                            + ", ".join(sorted(BITS)))
    return wanted


def source_type(file_type: str) -> str:
    """A model config's `file_type` ("ALL_F32", "F16", "Q4_K_M") in the same spelling."""
    return file_type.removeprefix("ALL_").upper()


def check_source(source: str, target: str) -> None:
    """Refuse what llama.cpp would make badly or pointlessly, before any work is done."""
    if source == target:
        raise QuantizeError(f"the model is already {target}")
    if source in FULL_SOURCES:
        return
    if source not in BITS:
        raise QuantizeError(f"cannot quantize a {source} model; quantize an F16, F32, BF16 or "
                            "Q8_0 model")
    if BITS[target] >= BITS[source]:
        raise QuantizeError(f"a {source} model cannot be quantized up to {target}; quantize an "
                            "F16, F32, BF16 or Q8_0 model instead")


def quantize(store: Store, source: Path, source_name: str, target: str, threads: int,
             report: Callable[[dict[str, Any]], None],
             cancelled: Callable[[], bool] = lambda: False) -> tuple[Layer, bool]:
    """Write `source` quantized to `target` as a blob; return its layer (media type unset) and
    whether the blob is new (the same source and type make the same bytes)."""
    sizes = _tensor_sizes(source)
    status = f"quantizing {source_name} model to {target}"
    total, done = sum(sizes.values()), 0
    report({"status": status, "digest": PROGRESS_DIGEST, "total": total, "completed": 0})
    with _locked_temporary(store) as tmp:
        for tensor in _run_child(source, tmp, target, source_name not in FULL_SOURCES[:3],
                                 threads, cancelled):
            done += sizes.get(tensor, 0)
            report({"status": status, "digest": PROGRESS_DIGEST, "total": total,
                    "completed": done})
        report({"status": status, "digest": PROGRESS_DIGEST, "total": total, "completed": total})
        digest, size = _hash(tmp)
        if store.has_blob(digest, size):
            return Layer("", digest, size), False
        _keep(tmp, store.blob_path(digest))  # already in the blobs folder: renamed, not copied
        return Layer("", digest, size), True


def _tensor_sizes(path: Path) -> dict[str, int]:
    """Each tensor's bytes in the source, so progress can be told in bytes as Ollama's is."""
    try:
        meta, _ = gguf_meta.read(path, want_tokens=False)
    except (gguf_meta.GGUFError, OSError) as exc:
        raise QuantizeError(f"cannot read the model to quantize: {exc}") from exc
    sizes = {}
    for tensor in meta.tensors:
        elements = 1
        for n in tensor.shape:
            elements *= n
        try:
            block, nbytes = GGML_QUANT_SIZES[GGMLQuantizationType[tensor.type_name]]
        except KeyError:
            block, nbytes = 1, 0
        sizes[tensor.name] = elements // block * nbytes
    return sizes


@contextlib.contextmanager
def _locked_temporary(store: Store) -> Iterator[Path]:
    """A `.partial` file in the blobs folder, locked the way the store locks its own writes."""
    store.blobs.mkdir(parents=True, exist_ok=True)
    path = store.blobs / f"quantize-{secrets.token_hex(8)}.partial"
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # the child reopens the same inode: the lock holds
        yield path
    finally:
        path.unlink(missing_ok=True)
        os.close(fd)


def _run_child(source: Path, out: Path, target: str, requantize: bool, threads: int,
               cancelled: Callable[[], bool]) -> Iterator[str]:
    """Run the quantizer; yield each tensor's name as it starts; raise if it does not finish."""
    ftype = LlamaFileType[f"MOSTLY_{target}"].value
    cmd = [sys.executable, "-m", "roost.models.quantize_main", "--input", str(source),
           "--output", str(out), "--ftype", str(ftype), "--threads", str(threads),
           "--parent-pid", str(os.getpid())]
    if requantize:
        cmd.append("--allow-requantize")
    errors: list[str] = []
    # stderr to a file, not a pipe: native code may write more than a pipe holds, unread.
    with tempfile.TemporaryFile() as err:
        # Unbuffered: a line the select saw must not wait in a reader's buffer for the next.
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err,
                                bufsize=0)
        assert proc.stdout is not None
        try:
            yield from _events(proc, errors, cancelled)
            code = proc.wait()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            proc.stdout.close()
        err.seek(0)
        stderr = err.read()[-4096:].decode(errors="replace")
    if code < 0:
        raise QuantizeFailed(f"the quantizer died by {_signal_name(-code)}: "
                             f"{_last_line(stderr) or 'no message'}")
    if code != 0:
        raise QuantizeError(f"llama.cpp could not quantize the model: "
                            f"{errors[-1] if errors else _last_line(stderr) or f'exit {code}'}")


def _events(proc: subprocess.Popen[bytes], errors: list[str],
            cancelled: Callable[[], bool]) -> Iterator[str]:
    """The child's JSON lines, polled so that a cancel is noticed within a quarter second."""
    assert proc.stdout is not None
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        while True:
            if cancelled():
                raise QuantizeFailed("quantizing was cancelled: the client went away")
            if not sel.select(timeout=0.25):
                continue
            line = proc.stdout.readline()
            if not line:
                return
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if "tensor" in event:
                yield str(event["tensor"])
            elif "error" in event:
                errors.append(str(event["error"]))


def _keep(tmp: Path, final: Path) -> None:
    """The hashed file becomes its blob: data on disk first, then the rename, then the folder."""
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, final)  # still locked by us: no sweep takes it for a leftover
    fsync_dir(final.parent)


def _hash(path: Path) -> tuple[str, int]:
    hasher, size = hashlib.sha256(), 0
    for chunk in _chunks(path):
        hasher.update(chunk)
        size += len(chunk)
    return f"sha256:{hasher.hexdigest()}", size


def _chunks(path: Path) -> Iterator[bytes]:
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            yield chunk


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"
