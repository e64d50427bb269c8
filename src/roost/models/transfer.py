"""Pull from and push to registries that speak the Ollama / Docker Registry v2 protocol.

A model named `host/namespace/model:tag` lives on `host` (the default host's models on
ROOST_REGISTRY; registry_client.py has the URLs and the token auth). Pull: the manifest first
(`fetch_manifest`, so a missing model is a plain 404 before any progress is streamed), then
each missing blob through the store's resumable writer (a Range request picks up where an
earlier try stopped; the sha256 is checked before the blob is kept; pulls of one blob share one
download), then the manifest's exact bytes. Push: each blob the registry lacks (HEAD first) as
one upload, then the manifest. `insecure` allows plain HTTP, which loopback hosts always get.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2 as httpx

from roost.models import gguf_check, resumable
from roost.models.names import Name
from roost.models.registry_client import CutOff, Registry, RegistryError, check
from roost.models.resolve import resolve
from roost.models.store import (
    MANIFEST_MEDIA_TYPE,
    MODEL_MEDIA_TYPE,
    Cancelled,
    DigestMismatch,
    Layer,
    Manifest,
    Store,
    StoreError,
)

Report = Callable[[dict[str, Any]], None]
OpenStream = Callable[[int], tuple[Iterable[bytes], int]]
_ETAG = "user.roost.etag"  # the validator of a partial's bytes, sent as If-Range on a resume
_CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")


@dataclass
class Remote:
    """A model's manifest as its registry served it, and the session that fetched it."""

    name: Name
    registry: Registry
    raw: bytes
    manifest: Manifest


def fetch_manifest(name: Name, insecure: bool) -> Remote:
    """The manifest of `name`; a RegistryError (404 when the registry has no such model)."""
    registry = Registry(name, insecure)
    try:
        resp = registry.send("GET", registry.url(f"manifests/{name.tag}"),
                             headers={"Accept": MANIFEST_MEDIA_TYPE})
        if resp.status_code == 404:
            raise RegistryError(f"pull model manifest: model '{name}' not found", 404)
        check(resp, registry.repo)
        try:
            manifest = Manifest.decode(resp.content)
        except (ValueError, KeyError, TypeError, StoreError) as exc:
            raise RegistryError(f"the registry's manifest for '{name}' is not valid: {exc}",
                                502) from exc
        return Remote(name, registry, resp.content, manifest)
    except BaseException:
        registry.close()
        raise


def pull(store: Store, name: Name, insecure: bool, report: Report,
         remote: Remote | None = None) -> None:
    """Pull `name` into the store; `remote` is its manifest when already fetched."""
    report({"status": "pulling manifest"})
    remote = remote or fetch_manifest(name, insecure)
    try:
        for layer in (*remote.manifest.layers, remote.manifest.config):
            _pull_blob(store, remote.registry, layer, report)
    finally:
        remote.registry.close()
    report({"status": "verifying sha256 digest"})
    _check_weights(store, remote.manifest)
    report({"status": "writing manifest"})
    store.put_raw(name, remote.raw)
    report({"status": "success"})


def _check_weights(store: Store, manifest: Manifest) -> None:
    """A registry's weights are judged as an upload's are, before a manifest makes them a model."""
    for layer in manifest.layers:
        if layer.media_type == MODEL_MEDIA_TYPE:
            path = store.blob_path(layer.digest)
            try:
                gguf_check.check(path)
            except gguf_check.InvalidGGUF as exc:
                path.unlink(missing_ok=True)  # no model can be made of it: not kept either
                raise RegistryError(f"the model layer {layer.digest}: {exc}", 400) from exc


def _pull_blob(store: Store, registry: Registry, layer: Layer, report: Report) -> None:
    status = f"pulling {layer.digest.split(':')[1][:12]}"

    def progress(done: int) -> None:
        report({"status": status, "digest": layer.digest, "total": layer.size, "completed": done})

    opener = _opener(registry, layer, resumable.partial_path(store.blob_path(layer.digest)))
    try:
        store.write_blob_resumable(opener, layer.digest, layer.size, progress)
    except (DigestMismatch, Cancelled):
        raise
    except (CutOff, StoreError) as exc:
        raise RegistryError(f"the download of {layer.digest} was cut off (the next pull "
                            f"resumes it): {exc}", 502) from exc


def _opener(registry: Registry, layer: Layer, partial: Path) -> OpenStream:
    """open_stream for the store: the blob from `offset` (Range, If-Range), or all of it."""

    def open_stream(offset: int) -> tuple[Iterable[bytes], int]:
        headers = {}
        if offset:
            headers["Range"] = f"bytes={offset}-"
            if etag := _saved_etag(partial):
                headers["If-Range"] = etag
        resp = registry.send("GET", registry.url(f"blobs/{layer.digest}"), stream=True,
                             headers=headers)
        try:
            start = _start_of(resp, offset, registry.repo)
        except BaseException:
            resp.close()
            raise
        _save_etag(partial, resp.headers.get("etag"))
        return registry.stream_chunks(resp), start

    return open_stream


def _start_of(resp: httpx.Response, offset: int, repo: str) -> int:
    """Where the body starts: 0 on a 200, the checked Content-Range start on a 206."""
    if resp.status_code == 200:
        return 0
    if resp.status_code == 206 and offset:
        match = _CONTENT_RANGE.match(resp.headers.get("content-range", ""))
        if match and int(match.group(1)) == offset:
            return offset
        raise RegistryError(f"the registry answered a resume at byte {offset} with "
                            f"Content-Range {resp.headers.get('content-range')!r}", 502)
    check(resp, repo)
    raise RegistryError(f"the registry answered a blob request with {resp.status_code}", 502)


def _saved_etag(partial: Path) -> str | None:
    with contextlib.suppress(OSError):
        return os.getxattr(partial, _ETAG).decode()
    return None


def _save_etag(partial: Path, etag: str | None) -> None:
    """Keep a strong ETag with the partial, so a resume asks for the rest of the same bytes."""
    with contextlib.suppress(OSError):
        if etag and not etag.startswith("W/"):
            os.setxattr(partial, _ETAG, etag.encode())
        else:
            os.removexattr(partial, _ETAG)


def push(store: Store, name: Name, insecure: bool, report: Report) -> None:
    ref = resolve(store, str(name))
    registry = Registry(ref.name, insecure)
    report({"status": "retrieving manifest"})
    try:
        for layer in (*ref.manifest.layers, ref.manifest.config):
            _push_blob(registry, store, layer, report)
        report({"status": "pushing manifest"})
        resp = registry.send("PUT", registry.url(f"manifests/{ref.name.tag}"),
                             content=ref.manifest.raw,
                             headers={"Content-Type": MANIFEST_MEDIA_TYPE})
        check(resp, registry.repo)
    finally:
        registry.close()
    report({"status": "success"})


def _push_blob(registry: Registry, store: Store, layer: Layer, report: Report) -> None:
    event = {"status": "starting upload", "digest": layer.digest, "total": layer.size}
    head = registry.send("HEAD", registry.url(f"blobs/{layer.digest}"))
    if head.status_code == 200:
        report({**event, "status": "using existing layer", "completed": layer.size})
        return
    report({**event, "completed": 0})
    start = registry.send("POST", registry.url("blobs/uploads/"))
    check(start, registry.repo)
    location = start.headers.get("location")
    if not location:
        raise RegistryError("the registry gave no upload location", 502)
    location = str(httpx.URL(registry.base).join(location))
    path = store.blob_path(layer.digest)

    def body() -> Any:
        sent = 0
        with path.open("rb") as src:
            while chunk := src.read(1 << 20):
                sent += len(chunk)
                report({**event, "status": f"pushing {layer.digest.split(':')[1][:12]}",
                        "completed": sent})
                yield chunk

    patch = registry.send("PATCH", location, content=body(),
                          headers={"Content-Type": "application/octet-stream",
                                   "Content-Length": str(layer.size)})
    check(patch, registry.repo)
    location = str(httpx.URL(location).join(patch.headers.get("location", location)))
    sep = "&" if "?" in location else "?"
    check(registry.send("PUT", f"{location}{sep}digest={layer.digest}"), registry.repo)


__all__ = ["RegistryError", "Remote", "StoreError", "fetch_manifest", "pull", "push"]
