"""The content-addressed model store under ROOST_HOME: blobs by digest, manifests by name.

Every write goes to a temporary name, is hashed and verified, fsynced, then renamed, so a
file under its final name is always whole. Digests and names are checked before a path is
built from them. A writer holds a lock on its temporary file for as long as it writes, so a
temporary whose lock is free was left by a writer that died (kill -9, power loss). Two kinds
of temporary: a one-shot write's (`sha256-<hex>-<random>.partial`) is junk once its writer is
gone, and the next write removes it rather than let such leftovers fill the disk; a download's
(`sha256-<hex>.partial`, see resumable.py) is kept for the next pull to resume, until its blob
is whole or it has lain untouched for a week.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import re
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from roost.models.downloads import Downloads
from roost.models.durable import fsync_dir
from roost.models.names import Name
from roost.models.store_errors import Cancelled as Cancelled
from roost.models.store_errors import DigestMismatch as DigestMismatch
from roost.models.store_errors import StoreError as StoreError

MANIFEST_MEDIA_TYPE = "application/vnd.docker.distribution.manifest.v2+json"
CONFIG_MEDIA_TYPE = "application/vnd.docker.container.image.v1+json"
MODEL_MEDIA_TYPE = "application/vnd.ollama.image.model"
TEMPLATE_MEDIA_TYPE = "application/vnd.ollama.image.template"
PARAMS_MEDIA_TYPE = "application/vnd.ollama.image.params"
SYSTEM_MEDIA_TYPE = "application/vnd.ollama.image.system"
LICENSE_MEDIA_TYPE = "application/vnd.ollama.image.license"
MESSAGES_MEDIA_TYPE = "application/vnd.ollama.image.messages"
ADAPTER_MEDIA_TYPE = "application/vnd.ollama.image.adapter"  # a LoRA GGUF, applied at load

_DIGEST = re.compile(r"^sha256[-:]([0-9a-f]{64})$")
_CHUNK = 1 << 20
_TEMP_SUFFIX = ".partial"
_RESUMABLE = re.compile(r"^sha256-[0-9a-f]{64}\.partial$")
RESUMABLE_FOR = 7 * 86400  # seconds an untouched download's partial is kept for a resume
_NO_ROOM = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)  # a full disk, a quota, a file size limit


class DiskFull(OSError):
    """No room left where the store writes; the temporary file is already gone.

    An OSError with the original errno, so callers that map write failures by errno (the blob
    upload's 507) keep working; its text names the full disk and the blob, in one line.
    """

    def __str__(self) -> str:
        return str(self.strerror)


@contextlib.contextmanager
def _no_room_is_disk_full(what: str, where: Path) -> Iterator[None]:
    """Turn ENOSPC/EDQUOT/EFBIG into DiskFull: "[Errno 28] No space left" names neither."""
    try:
        yield
    except OSError as exc:
        if exc.errno not in _NO_ROOM or isinstance(exc, DiskFull):
            raise
        raise DiskFull(exc.errno, f"the disk is full: no room for {what} in {where} "
                                  f"({exc.strerror})") from exc


def parse_digest(digest: str) -> str:
    """Return the canonical `sha256-<hex>` form, or raise before any path is built."""
    match = _DIGEST.match(digest)
    if not match:
        raise StoreError(f"invalid digest {digest!r}")
    return f"sha256-{match.group(1)}"


def wire_digest(digest: str) -> str:
    """The `sha256:<hex>` form that manifests and APIs use."""
    return parse_digest(digest).replace("-", ":", 1)


@dataclass(frozen=True)
class Layer:
    media_type: str
    digest: str  # sha256:<hex>
    size: int

    def to_json(self) -> dict[str, Any]:
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Layer:
        return cls(data["mediaType"], wire_digest(data["digest"]), int(data["size"]))


@dataclass(frozen=True)
class Manifest:
    config: Layer
    layers: tuple[Layer, ...]
    raw: bytes
    modified_at: datetime

    @property
    def digest_hex(self) -> str:
        """The model ID Ollama shows: sha256 of the manifest's bytes."""
        return hashlib.sha256(self.raw).hexdigest()

    @property
    def size(self) -> int:
        return self.config.size + sum(layer.size for layer in self.layers)

    def layer(self, media_type: str) -> Layer | None:
        return next((la for la in self.layers if la.media_type == media_type), None)

    @classmethod
    def decode(cls, raw: bytes, modified_at: datetime | None = None) -> Manifest:
        doc = json.loads(raw)
        return cls(
            config=Layer.from_json(doc["config"]),
            layers=tuple(Layer.from_json(la) for la in doc.get("layers", [])),
            raw=raw,
            modified_at=modified_at or now(),
        )

    @staticmethod
    def encode(config: Layer, layers: Iterable[Layer]) -> bytes:
        doc = {
            "schemaVersion": 2,
            "mediaType": MANIFEST_MEDIA_TYPE,
            "config": config.to_json(),
            "layers": [layer.to_json() for layer in layers],
        }
        return json.dumps(doc, indent=None, separators=(",", ":")).encode()


class Store:
    """Blobs and manifests under one root directory."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.blobs = root / "blobs"
        self.manifests = root / "manifests"
        # A manifest's check-then-write and a prune's scan-then-unlink exclude each other, or
        # a prune (a delete elsewhere) could take a blob a manifest being written names.
        self._referencing = threading.Lock()
        self.downloads = Downloads()  # one download per digest in this process

    # -- blobs ---------------------------------------------------------------------------

    def blob_path(self, digest: str) -> Path:
        return self.blobs / parse_digest(digest)

    def has_blob(self, digest: str, size: int | None = None) -> bool:
        path = self.blob_path(digest)
        return path.is_file() and (size is None or path.stat().st_size == size)

    def write_blob(
        self,
        chunks: Iterable[bytes],
        digest: str,
        size: int | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> Layer:
        """Stream chunks into the blob `digest`, hashing as they come; refuse a mismatch."""
        final = self.blob_path(digest)
        self.blobs.mkdir(parents=True, exist_ok=True)
        self.sweep_temporaries()
        what = wire_digest(digest) + (f" ({size / 1e6:.1f} MB)" if size else "")
        with _no_room_is_disk_full(what, self.blobs):
            fd, tmp = self._locked_temporary(final.name)
            try:
                with os.fdopen(fd, "wb") as out:
                    written, actual = _copy_hashing(chunks, out, progress)
                    out.flush()
                    os.fsync(out.fileno())
                    _check_written(digest, size, written, actual)
                    os.replace(tmp, final)  # still locked: no sweep can take it for a leftover
                fsync_dir(self.blobs)
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
        _remove_if_unlocked(final.with_name(final.name + _TEMP_SUFFIX))  # a download's, now moot
        return Layer("", wire_digest(digest), written)

    def write_blob_resumable(
        self,
        open_stream: Callable[[int], tuple[Iterable[bytes], int]],
        digest: str,
        size: int,
        progress: Callable[[int], None] | None = None,
    ) -> Layer:
        """Download the blob `digest` of `size` bytes, resuming what an earlier try left.

        `open_stream(offset)` returns the source's chunks and the offset they start at (the
        offset asked for, or 0 when the source sends everything again). Pulls of one digest in
        this process share one download and its progress (reported at most every 0.1 s); other
        processes wait on its lock. `progress` may raise to leave (the client went away): the
        last caller to leave cancels the download, whose bytes stay for the next try
        (`Cancelled`). A wrong size or digest is DigestMismatch and keeps nothing.
        """
        from roost.models import link, resumable

        final = self.blob_path(digest)
        if self.has_blob(digest, size):
            if link.is_fresh(self, digest):
                if progress is not None:
                    progress(size)
                return Layer("", wire_digest(digest), size)
            final.unlink()  # a linked file changed since: the store's name for it goes, not the file
        self.blobs.mkdir(parents=True, exist_ok=True)
        what = wire_digest(digest) + f" ({size / 1e6:.1f} MB)"

        def work(report: Callable[[int], None], cancel: threading.Event) -> None:
            with _no_room_is_disk_full(what, self.blobs):
                resumable.write(final, open_stream, wire_digest(digest), size, report, cancel)

        self.downloads.run(final.name, work, progress or (lambda _: None))
        return Layer("", wire_digest(digest), size)

    def _locked_temporary(self, prefix: str) -> tuple[int, Path]:
        """A new temporary file, locked; retried if a sweep removed it before the lock was held."""
        while True:
            fd, name = tempfile.mkstemp(prefix=prefix + "-", suffix=_TEMP_SUFFIX, dir=self.blobs)
            fcntl.flock(fd, fcntl.LOCK_EX)
            if os.fstat(fd).st_nlink > 0:
                return fd, Path(name)
            os.close(fd)

    def sweep_temporaries(self) -> list[Path]:
        """Remove temporary files no live writer holds (its lock dies with its process),
        except a download's partial that a later pull may still resume."""
        removed = []
        for path in self.blobs.glob("*" + _TEMP_SUFFIX) if self.blobs.is_dir() else ():
            if self._resumable(path):
                continue
            if _remove_if_unlocked(path):
                removed.append(path)
        return removed

    def _resumable(self, path: Path) -> bool:
        """A download's partial whose blob is still missing and that is not a week stale."""
        if not _RESUMABLE.match(path.name):
            return False
        if (self.blobs / path.name.removesuffix(_TEMP_SUFFIX)).exists():
            return False
        try:
            return time.time() - path.stat().st_mtime < RESUMABLE_FOR
        except FileNotFoundError:
            return False

    def write_bytes(self, data: bytes, media_type: str) -> Layer:
        """Store small content (a template, parameters, config) and return its layer."""
        digest = f"sha256:{hashlib.sha256(data).hexdigest()}"
        if not self.has_blob(digest, len(data)):
            self.write_blob([data], digest, len(data))
        return Layer(media_type, digest, len(data))

    def read_bytes(self, digest: str) -> bytes:
        return self.blob_path(digest).read_bytes()

    # -- manifests -----------------------------------------------------------------------

    def _manifest_path(self, name: Name) -> Path:
        return self.manifests / name.host / name.namespace / name.model / name.tag

    def find_manifest_path(self, name: Name) -> Path | None:
        """Case-insensitive lookup, as Ollama's names compare."""
        exact = self._manifest_path(name)
        if exact.is_file():
            return exact
        for path in self._manifest_files():
            if self._name_of(path).key == name.key:
                return path
        return None

    def get(self, name: Name) -> Manifest | None:
        path = self.find_manifest_path(name)
        if path is None:
            return None
        return self._read_manifest(path)

    def _read_manifest(self, path: Path) -> Manifest:
        modified = datetime.fromtimestamp(path.stat().st_mtime, tz=UTC)
        return Manifest.decode(path.read_bytes(), modified)

    def put(self, name: Name, config: Layer, layers: Iterable[Layer]) -> Manifest:
        """Write a manifest atomically; every layer it names must already be stored."""
        return self.put_raw(name, Manifest.encode(config, layers))

    def put_raw(self, name: Name, raw: bytes) -> Manifest:
        """Keep a manifest's exact bytes (its digest is the model's ID) once its layers are here."""
        manifest = Manifest.decode(raw)
        with self._referencing:
            for layer in (manifest.config, *manifest.layers):
                if not self.has_blob(layer.digest, layer.size):
                    raise StoreError(f"layer {layer.digest} is missing from the store")
            path = self.find_manifest_path(name) or self._manifest_path(name)
            _atomic_write(path, raw)
        return self._read_manifest(path)

    def delete(self, name: Name) -> bool:
        path = self.find_manifest_path(name)
        if path is None:
            return False
        path.unlink()
        for parent in path.parents:
            if parent == self.manifests:
                break
            with contextlib.suppress(OSError):
                parent.rmdir()  # only succeeds when empty
        self.prune()
        return True

    def entries(self) -> list[tuple[Name, Manifest]]:
        out = []
        for path in self._manifest_files():
            try:
                out.append((self._name_of(path), self._read_manifest(path)))
            except (ValueError, KeyError, OSError):
                continue  # a foreign or damaged file is not a model; leave it alone
        return sorted(out, key=lambda item: item[1].modified_at, reverse=True)

    def entries_named(self, namespace: str, model: str, tag: str) -> list[tuple[Name, Path]]:
        """Manifests of this namespace/model:tag under any host (case-insensitive)."""
        want = (namespace.lower(), model.lower(), tag.lower())
        return [(self._name_of(p), p) for p in self._manifest_files()
                if self._name_of(p).key[1:] == want]

    def prune(self) -> None:
        """Remove blobs no manifest references, and temporaries no writer holds."""
        if not self.blobs.is_dir():
            return
        self.sweep_temporaries()
        with self._referencing:
            used = set()
            for _, manifest in self.entries():
                used.add(parse_digest(manifest.config.digest))
                used.update(parse_digest(la.digest) for la in manifest.layers)
            for path in self.blobs.iterdir():
                if path.name not in used and not path.name.endswith(_TEMP_SUFFIX):
                    path.unlink(missing_ok=True)

    def _manifest_files(self) -> Iterator[Path]:
        if not self.manifests.is_dir():
            return iter(())
        return (p for p in self.manifests.glob("*/*/*/*") if p.is_file() and not p.name.startswith("."))

    def _name_of(self, path: Path) -> Name:
        rel = path.relative_to(self.manifests).parts
        return Name(rel[0], rel[1], rel[2], rel[3])


def _copy_hashing(chunks: Iterable[bytes], out: Any,
                  progress: Callable[[int], None] | None) -> tuple[int, str]:
    """Write every chunk, returning the byte count and the `sha256-<hex>` of what was written."""
    hasher = hashlib.sha256()
    written = 0
    for chunk in chunks:
        out.write(chunk)
        hasher.update(chunk)
        written += len(chunk)
        if progress is not None:
            progress(written)
    return written, f"sha256-{hasher.hexdigest()}"


def _check_written(digest: str, size: int | None, written: int, actual: str) -> None:
    if size is not None and written != size:
        raise DigestMismatch(f"size mismatch for {digest}: got {written}, want {size}")
    if actual != parse_digest(digest):
        raise DigestMismatch(f"digest mismatch: got {wire_digest(actual)}, want {digest}")


def _remove_if_unlocked(path: Path) -> bool:
    """Unlink `path` if no process holds its lock: its writer is gone, it is a leftover."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False  # already gone, or not ours to read
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        if os.stat(path).st_ino != os.fstat(fd).st_ino:
            return False  # renamed or replaced since we opened it
        path.unlink()
        return True
    except OSError:
        return False  # locked: a live writer's
    finally:
        os.close(fd)


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with _no_room_is_disk_full(f"the manifest {path.name}", path.parent):
        fd, tmp_name = tempfile.mkstemp(prefix="." + path.name + "-", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp_name, path)
            fsync_dir(path.parent)
        except BaseException:
            Path(tmp_name).unlink(missing_ok=True)
            raise




def now() -> datetime:
    return datetime.now(UTC)
