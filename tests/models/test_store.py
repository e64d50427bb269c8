from __future__ import annotations

import errno
import hashlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from roost.models.names import Name
from roost.models.store import (
    CONFIG_MEDIA_TYPE,
    DigestMismatch,
    Store,
    StoreError,
    parse_digest,
)


@pytest.mark.parametrize("bad", [
    "sha256-abc", "sha256:" + "g" * 64, "sha256-" + "A" * 64, "../" + "0" * 64,
    "sha256-" + "0" * 64 + "/../x", "md5-" + "0" * 32, "sha256-" + "0" * 63,
])
def test_bad_digests_are_refused_before_any_path(bad: str, tmp_path: Path) -> None:
    with pytest.raises(StoreError):
        parse_digest(bad)
    with pytest.raises(StoreError):
        Store(tmp_path).blob_path(bad)


def test_digest_forms() -> None:
    hexd = "a" * 64
    assert parse_digest(f"sha256:{hexd}") == parse_digest(f"sha256-{hexd}") == f"sha256-{hexd}"


def test_blob_written_whole_or_not_at_all(tmp_path: Path) -> None:
    store = Store(tmp_path)
    data = b"hello roost" * 1000
    digest = f"sha256:{hashlib.sha256(data).hexdigest()}"
    chunks = [data[:5000], data[5000:]]
    seen: list[int] = []
    layer = store.write_blob(chunks, digest, len(data), seen.append)
    assert layer.size == len(data) and seen[-1] == len(data)
    assert store.blob_path(digest).read_bytes() == data

    corrupted = [data[:5000], b"X" + data[5001:]]
    other = f"sha256:{hashlib.sha256(b'other').hexdigest()}"
    with pytest.raises(DigestMismatch):
        store.write_blob(corrupted, other)
    assert not store.blob_path(other).exists()
    assert sorted(p.name for p in store.blobs.iterdir()) == [parse_digest(digest)]


def test_size_mismatch_is_refused(tmp_path: Path) -> None:
    store = Store(tmp_path)
    data = b"abc"
    digest = f"sha256:{hashlib.sha256(data).hexdigest()}"
    with pytest.raises(DigestMismatch):
        store.write_blob([data], digest, size=4)
    assert not store.blob_path(digest).exists()


def test_manifest_round_trip_case_insensitive_and_delete_prunes(tmp_path: Path) -> None:
    store = Store(tmp_path)
    config = store.write_bytes(b"{}", CONFIG_MEDIA_TYPE)
    weights = store.write_bytes(b"weights", "application/vnd.ollama.image.model")
    store.put(Name.parse("Team/Model:Tag"), config, [weights])
    manifest = store.get(Name.parse("team/model:tag"))
    assert manifest is not None and manifest.size == config.size + weights.size
    assert [str(n) for n, _ in store.entries()] == ["Team/Model:Tag"]
    assert store.delete(Name.parse("team/model:TAG"))
    assert store.entries() == []
    assert not store.blob_path(weights.digest).exists()


def test_manifest_refuses_missing_layers(tmp_path: Path) -> None:
    store = Store(tmp_path)
    config = store.write_bytes(b"{}", CONFIG_MEDIA_TYPE)
    missing = type(config)("application/vnd.ollama.image.model", "sha256:" + "0" * 64, 3)
    with pytest.raises(StoreError):
        store.put(Name.parse("m"), config, [missing])
    assert store.entries() == []


def test_a_dead_writers_leftover_is_swept_and_a_live_writers_is_kept(tmp_path: Path) -> None:
    """A temporary that kill -9 left behind holds no lock; one being written holds its writer's."""
    store = Store(tmp_path)
    store.blobs.mkdir()
    leftover = store.blobs / f"sha256-{'0' * 64}-dead.partial"
    leftover.write_bytes(b"half a blob")
    data = b"a blob written while sweeps run" * 100
    digest = f"sha256:{hashlib.sha256(data).hexdigest()}"
    during: list[tuple[list[Path], list[str]]] = []

    def chunks() -> Iterator[bytes]:
        yield data[:1000]
        swept = store.sweep_temporaries()  # as another request's write would, mid-way
        during.append((swept, sorted(p.name for p in store.blobs.iterdir())))
        yield data[1000:]

    store.write_blob(chunks(), digest, len(data))
    swept, present = during[0]
    assert not leftover.exists()  # the write that started swept the dead writer's file
    assert swept == [] and len(present) == 1 and present[0].endswith(".partial")  # kept, live
    assert sorted(p.name for p in store.blobs.iterdir()) == [parse_digest(digest)]


def test_a_full_disk_is_one_clear_error_and_leaves_nothing(tmp_path: Path) -> None:
    """A 64 KiB file-size limit (EFBIG) in a child process stands in for a full disk."""
    script = (
        "import resource, sys\n"
        "from pathlib import Path\n"
        "from roost.models.store import DiskFull, Store\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (65536, 65536))\n"
        "try:\n"
        "    Store(Path(sys.argv[1])).write_blob([b'x' * (1 << 20)], 'sha256:' + '0' * 64, 1 << 20)\n"
        "except DiskFull as exc:\n"
        "    print(exc.errno, exc)\n"
    )
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"{errno.EFBIG} the disk is full: no room for sha256:0000")
    assert "(1.0 MB)" in done.stdout and "File too large" in done.stdout
    assert list((tmp_path / "blobs").iterdir()) == []


def test_a_linked_blob_changed_since_it_was_linked_is_fetched_again(tmp_path: Path) -> None:
    """A pull must not take a stale linked file for the blob it names (it would then never load)."""
    import os

    from roost.models import link
    from tests.support import gguf_files

    data = gguf_files.tiny()
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    source = tmp_path / "mine.gguf"
    source.write_bytes(data)
    store = Store(tmp_path / "home")
    link.link(store, digest, source)
    fetched: list[int] = []

    def open_stream(offset: int) -> tuple[Iterator[bytes], int]:
        fetched.append(offset)
        return iter([data]), 0

    store.write_blob_resumable(open_stream, digest, len(data))
    assert fetched == []  # fresh: nothing to fetch
    os.utime(source, ns=(0, source.stat().st_mtime_ns + 10**9))  # the user's file changed
    assert not link.is_fresh(store, digest)
    store.write_blob_resumable(open_stream, digest, len(data))
    assert fetched == [0] and link.is_fresh(store, digest)
    assert store.blob_path(digest).read_bytes() == data
