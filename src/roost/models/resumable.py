"""Write one blob from a source that can start at an offset, resuming what an earlier try left.

The bytes go to `blobs/sha256-<hex>.partial`, a name fixed by the digest, so a pull that dies
(kill -9, a reboot, a cut connection, Ctrl+C) leaves them where the next try finds them. Its
writer holds an exclusive lock on that file for as long as it writes: that is both the
cross-process per-digest lock and what tells a sweep the file is live. Every so often the data
is fsynced and the synced length recorded in an extended attribute, so after a power loss
only bytes known to be on disk count; a resume re-hashes those bytes (a hash state cannot be
saved) and asks the source for the rest. The blob gets its final name only once its size and
sha256 match, and the file and its directory are fsynced around the rename.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from roost.models.durable import fsync_dir
from roost.models.store_errors import Cancelled, DigestMismatch, StoreError

OpenStream = Callable[[int], tuple[Iterable[bytes], int]]
"""open_stream(offset) -> (chunks, start): the source's bytes from `start`, which is `offset`
when the source could resume there, or 0 when it sends the whole blob again."""

SUFFIX = ".partial"
_SYNCED = "user.roost.synced"
_SYNC_EVERY = 0.25  # seconds between fsyncs: what a power loss may cost a resume
_LOCK_POLL = 0.2
_HASH_CHUNK = 1 << 20


def partial_path(final: Path) -> Path:
    return final.with_name(final.name + SUFFIX)


def write(final: Path, open_stream: OpenStream, digest: str, size: int,
          progress: Callable[[int], None], cancel: threading.Event) -> None:
    """Make `final` hold the blob `digest` of `size` bytes, resuming a partial if one is there."""
    partial = partial_path(final)
    fd = _lock(partial, cancel)
    try:
        if final.is_file() and final.stat().st_size == size:
            partial.unlink()  # another writer (one that held the lock before us) finished it
            return
        try:
            _fill(fd, open_stream, digest, size, progress, cancel)
            os.replace(partial, final)  # still locked: no sweep takes it for a leftover
        except (DigestMismatch, OSError) as exc:
            if isinstance(exc, DigestMismatch) or exc.errno in (errno.ENOSPC, errno.EDQUOT,
                                                                errno.EFBIG):
                partial.unlink(missing_ok=True)  # wrong bytes, or no room: nothing to resume
            raise
        fsync_dir(final.parent)
    finally:
        os.close(fd)


def _lock(partial: Path, cancel: threading.Event) -> int:
    """Open and lock the partial, waiting while another writer (any process) holds it."""
    while True:
        fd = os.open(partial, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if cancel.wait(_LOCK_POLL):
                        raise Cancelled("the pull was cancelled") from None
            if os.fstat(fd).st_nlink > 0 and _same_file(fd, partial):
                return fd
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)  # renamed into place or swept while we waited: open the name afresh


def _same_file(fd: int, path: Path) -> bool:
    try:
        return os.stat(path).st_ino == os.fstat(fd).st_ino
    except FileNotFoundError:
        return False


def _fill(fd: int, open_stream: OpenStream, digest: str, size: int,
          progress: Callable[[int], None], cancel: threading.Event) -> None:
    offset, hasher = _resume_point(fd, size)
    if offset == size and _matches(hasher, digest):
        progress(size)
        return
    if offset == size:  # whole but wrong: the source is asked for all of it again
        offset, hasher = _restart(fd)
    progress(offset)
    chunks, start = open_stream(offset)
    try:
        if start != offset:
            if start != 0:
                raise StoreError(f"the source resumed at byte {start}, not {offset}")
            offset, hasher = _restart(fd)
        _copy(fd, chunks, offset, hasher, size, progress, cancel)
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()
    if not _matches(hasher, digest):
        raise DigestMismatch(f"digest mismatch: got sha256:{hasher.hexdigest()}, want {digest}")


def _copy(fd: int, chunks: Iterable[bytes], offset: int, hasher: hashlib._Hash, size: int,
          progress: Callable[[int], None], cancel: threading.Event) -> None:
    """Append the chunks at `offset`, fsyncing now and then; a stop keeps what was written."""
    os.lseek(fd, offset, os.SEEK_SET)
    written, synced_at = offset, time.monotonic()
    try:
        for chunk in chunks:
            if cancel.is_set():
                raise Cancelled("the pull was cancelled")
            if written + len(chunk) > size:
                raise DigestMismatch(f"size mismatch: the source sent more than {size} bytes")
            _write_all(fd, chunk)
            hasher.update(chunk)
            written += len(chunk)
            if time.monotonic() - synced_at >= _SYNC_EVERY:
                _sync(fd, written)
                synced_at = time.monotonic()
            progress(written)
    finally:
        _sync(fd, written)
    if written != size:
        raise StoreError(f"the source ended after {written} of {size} bytes")


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _sync(fd: int, length: int) -> None:
    """fsync the data, then record how much of it is known to be on disk."""
    try:
        os.fsync(fd)
    except OSError:
        return  # the write that failed says why; the synced length stays as it was
    with contextlib.suppress(OSError):  # no extended attributes: the length is the resume point
        os.setxattr(fd, _SYNCED, str(length).encode())


def _resume_point(fd: int, size: int) -> tuple[int, hashlib._Hash]:
    """The length of the partial's data that counts, and the hash of those bytes."""
    length = os.fstat(fd).st_size
    try:
        length = min(length, int(os.getxattr(fd, _SYNCED)))
    except OSError as exc:
        if exc.errno == errno.ENODATA:
            length = 0  # never synced: nothing is known to be on disk
    except ValueError:
        length = 0
    if length > size:
        length = 0
    os.ftruncate(fd, length)
    hasher = hashlib.sha256()
    os.lseek(fd, 0, os.SEEK_SET)
    left = length
    while left:
        chunk = os.read(fd, min(_HASH_CHUNK, left))
        if not chunk:
            raise StoreError("the partial file shrank while it was locked")
        hasher.update(chunk)
        left -= len(chunk)
    return length, hasher


def _restart(fd: int) -> tuple[int, hashlib._Hash]:
    os.ftruncate(fd, 0)
    _sync(fd, 0)
    return 0, hashlib.sha256()


def _matches(hasher: hashlib._Hash, digest: str) -> bool:
    return f"sha256:{hasher.hexdigest()}" == digest.replace("sha256-", "sha256:", 1)
