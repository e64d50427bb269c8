"""Blobs that are the user's own files, linked into the store instead of copied (`create --link`).

A GGUF already on disk need not be copied into ROOST_HOME: once hashed it becomes the blob
of its digest as a hard link when the store is on the same filesystem (no extra space, and
the blob survives the user deleting or replacing their file), else as a symbolic link to
the recorded path. Either way a small record under `links/` keeps the file's identity, size
and modification time at the moment it was hashed (and, for a path, which file it names);
`verified` checks them before anything
reads the weights, so a file edited or removed afterwards is a clear error at load, never
garbage in a runner. The record lives outside `blobs/` because the store prunes every file
there that no manifest names.
"""

from __future__ import annotations

import errno
import functools
import hashlib
import json
import os
import secrets
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from roost.models.durable import fsync_dir
from roost.models.store import Store, StoreError, parse_digest, wire_digest

HARD = "hardlink"
PATH = "path"
_CHUNK = 1 << 20


class LinkError(ValueError):
    """The file cannot be linked (not absolute, not a readable file, not this digest)."""


class StaleLink(LookupError):
    """A linked blob's file changed or went away since it was linked."""


@dataclass(frozen=True)
class Record:
    path: str  # the user's file, as linked
    kind: str  # HARD or PATH
    size: int
    mtime_ns: int
    dev: int
    ino: int


def link(store: Store, digest: str, source: Path) -> str:
    """Make `source` the blob `digest` without copying it; return how (HARD or PATH).

    A hard link where it can be made; a recorded path where it cannot (another filesystem,
    or a file the server may read but not link). The record is written before the link
    appears, so no linked blob is ever unrecorded, even after a crash.
    """
    source = _checked_source(source)
    before = os.stat(source)
    if _sha256(source) != parse_digest(digest):
        raise LinkError(f"{source} does not have the digest {wire_digest(digest)}")
    if _identity(os.stat(source)) != _identity(before):
        raise LinkError(f"{source} changed while it was being hashed")
    store.blobs.mkdir(parents=True, exist_ok=True)
    final = store.blob_path(digest)
    for kind in (HARD, PATH):
        _write_record(store, digest, Record(str(source), kind, before.st_size,
                                            before.st_mtime_ns, before.st_dev, before.st_ino))
        try:
            _place(final, functools.partial(_make, kind, source))
            break
        except OSError:
            if kind == PATH:
                raise
    if _identity(os.stat(final)) != _identity(before):
        final.unlink(missing_ok=True)
        raise LinkError(f"{source} changed while it was being linked")
    fsync_dir(store.blobs)
    return kind


def _make(kind: str, source: Path, tmp: Path) -> None:
    if kind == HARD:
        os.link(source, tmp)
    else:
        os.symlink(source, tmp)


def verified(store: Store, digest: str) -> Path:
    """The blob's path, after checking that a linked blob is still the file that was hashed."""
    path = store.blob_path(digest)
    record = current_record(store, digest)
    if record is None:
        return path
    try:
        now = os.stat(path)
    except OSError as exc:
        raise StaleLink(f"the file {record.path} linked as {wire_digest(digest)} is gone "
                        f"({exc.strerror}): restore it or create the model again") from exc
    same_file = record.kind == HARD or (now.st_dev, now.st_ino) == (record.dev, record.ino)
    if not same_file or (now.st_size, now.st_mtime_ns) != (record.size, record.mtime_ns):
        raise StaleLink(f"the file {record.path} linked as {wire_digest(digest)} changed since "
                        "it was linked (size or modification time differ): create the model again")
    return path


def is_fresh(store: Store, digest: str) -> bool:
    """Whether the blob is present and, if linked, unchanged (a stale one may be replaced)."""
    if not store.has_blob(digest):
        return False
    try:
        verified(store, digest)
    except StaleLink:
        return False
    return True


def current_record(store: Store, digest: str) -> Record | None:
    """The blob's link record, if it has one that still describes the blob now in its place.

    A record outlives its blob when a prune or an upload replaces it; it is ignored then: a
    symbolic link must still point at the recorded path, a hard link still be the same inode.
    """
    path = store.blob_path(digest)
    try:
        record = Record(**json.loads(_record_path(store, digest).read_text()))
        placed = os.lstat(path)
    except (OSError, ValueError, TypeError):
        return None
    if record.kind == PATH:
        return record if path.is_symlink() and os.readlink(path) == record.path else None
    return record if (placed.st_dev, placed.st_ino) == (record.dev, record.ino) else None


def _checked_source(source: Path) -> Path:
    if not source.is_absolute():
        raise LinkError(f"the path to link must be absolute, got {str(source)!r}")
    try:
        if not os.path.isfile(source):
            raise LinkError(f"cannot link {source}: not a regular file")
        with source.open("rb") as f:  # before hashing anything: only a GGUF is worth it
            if f.read(4) != b"GGUF":
                raise LinkError(f"cannot link {source}: not a GGUF file")
    except LinkError:
        raise
    except OSError as exc:
        raise LinkError(f"cannot link {source}: {exc.strerror}") from exc
    except ValueError as exc:  # a NUL byte in the path
        raise LinkError(f"cannot link {str(source)!r}: {exc}") from exc
    return Path(os.path.realpath(source))


def _sha256(path: Path) -> str:
    hasher = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            hasher.update(chunk)
    return f"sha256-{hasher.hexdigest()}"


def _identity(st: os.stat_result) -> tuple[int, int, int, int]:
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns


def _place(final: Path, make: Callable[[Path], None]) -> None:
    """Create the link under a temporary name, then rename it over `final` atomically."""
    tmp = final.with_name(f".{final.name}.link-{secrets.token_hex(6)}")  # one per caller
    tmp.unlink(missing_ok=True)
    make(tmp)
    try:
        os.replace(tmp, final)
    except OSError:
        tmp.unlink(missing_ok=True)
        raise


def _record_path(store: Store, digest: str) -> Path:
    return store.root / "links" / f"{parse_digest(digest)}.json"


def _write_record(store: Store, digest: str, record: Record) -> None:
    path = _record_path(store, digest)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}-{secrets.token_hex(6)}")
    try:
        with tmp.open("w") as out:
            json.dump(asdict(record), out)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise StoreError(f"the disk is full: cannot record the link of {record.path}") from exc
        raise
    fsync_dir(path.parent)
