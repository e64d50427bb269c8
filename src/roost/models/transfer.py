"""Pull from and push to registries that speak the Ollama / Docker Registry v2 protocol.

A model named `host/namespace/model:tag` lives on `host`. Pull: manifest, then each
missing blob streamed into the store (sha256 checked before the blob is kept), then the
manifest's exact bytes. Push: each blob the registry lacks (HEAD first) as one upload,
then the manifest. `insecure` allows plain HTTP, which loopback hosts always get.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx2 as httpx

from roost.models import gguf_check
from roost.models.names import DEFAULT_HOST, Name
from roost.models.resolve import resolve
from roost.models.store import (
    MANIFEST_MEDIA_TYPE,
    MODEL_MEDIA_TYPE,
    Layer,
    Manifest,
    Store,
    StoreError,
)

Report = Callable[[dict[str, Any]], None]
_LOOPBACK = ("127.0.0.1", "localhost", "[::1]")


class RegistryError(RuntimeError):
    def __init__(self, message: str, status: int = 500) -> None:
        super().__init__(message)
        self.status = status


def _base(name: Name, insecure: bool) -> str:
    host = name.host.rsplit(":", 1)[0]
    scheme = "http" if insecure or host in _LOOPBACK else "https"
    return f"{scheme}://{name.host}/v2/{name.namespace}/{name.model}"


def _client() -> httpx.Client:
    return httpx.Client(timeout=httpx.Timeout(60.0, connect=10.0), follow_redirects=True)


def pull(store: Store, name: Name, insecure: bool, report: Report) -> None:
    if name.host == DEFAULT_HOST:
        raise RegistryError(f"pull model manifest: model '{name}' not found "
                            "(only the built-in catalog and self-hosted registries are reachable)",
                            404)
    base = _base(name, insecure)
    report({"status": "pulling manifest"})
    with _client() as http:
        resp = _get(http, f"{base}/manifests/{name.tag}",
                    headers={"Accept": MANIFEST_MEDIA_TYPE})
        if resp.status_code == 404:
            raise RegistryError(f"pull model manifest: model '{name}' not found", 404)
        _check(resp)
        raw = resp.content
        manifest = Manifest.decode(raw)
        for layer in (*manifest.layers, manifest.config):
            _pull_blob(http, store, base, layer, report)
    report({"status": "verifying sha256 digest"})
    _check_weights(store, manifest)
    report({"status": "writing manifest"})
    store.put_raw(name, raw)
    report({"status": "success"})


def _check_weights(store: Store, manifest: Manifest) -> None:
    """A registry's weights are judged as an upload's are, before a manifest makes them a model."""
    for layer in manifest.layers:
        if layer.media_type == MODEL_MEDIA_TYPE:
            try:
                gguf_check.check(store.blob_path(layer.digest))
            except gguf_check.InvalidGGUF as exc:
                raise RegistryError(f"the model layer {layer.digest}: {exc}",
                                    400) from exc


def _pull_blob(http: httpx.Client, store: Store, base: str, layer: Layer, report: Report) -> None:
    status = f"pulling {layer.digest.split(':')[1][:12]}"
    if store.has_blob(layer.digest, layer.size):
        report({"status": status, "digest": layer.digest, "total": layer.size,
                "completed": layer.size})
        return
    def progress(done: int) -> None:
        report({"status": status, "digest": layer.digest, "total": layer.size, "completed": done})

    try:
        with http.stream("GET", f"{base}/blobs/{layer.digest}") as resp:
            _check(resp)
            store.write_blob(resp.iter_bytes(1 << 20), layer.digest, layer.size, progress)
    except httpx.TransportError as exc:  # cut off mid-blob: nothing is kept under its name
        raise RegistryError(f"the download of {layer.digest} was cut off: {exc}") from exc


def push(store: Store, name: Name, insecure: bool, report: Report) -> None:
    ref = resolve(store, str(name))
    base = _base(ref.name, insecure)
    report({"status": "retrieving manifest"})
    with _client() as http:
        for layer in (*ref.manifest.layers, ref.manifest.config):
            _push_blob(http, store, base, layer, report)
        report({"status": "pushing manifest"})
        resp = _send(http, "PUT", f"{base}/manifests/{ref.name.tag}", content=ref.manifest.raw,
                     headers={"Content-Type": MANIFEST_MEDIA_TYPE})
        _check(resp)
    report({"status": "success"})


def _push_blob(http: httpx.Client, store: Store, base: str, layer: Layer, report: Report) -> None:
    event = {"status": "starting upload", "digest": layer.digest, "total": layer.size}
    head = _send(http, "HEAD", f"{base}/blobs/{layer.digest}")
    if head.status_code == 200:
        report({**event, "status": "using existing layer", "completed": layer.size})
        return
    report({**event, "completed": 0})
    start = _send(http, "POST", f"{base}/blobs/uploads/")
    _check(start)
    location = start.headers.get("location")
    if not location:
        raise RegistryError("the registry gave no upload location")
    path = store.blob_path(layer.digest)

    def body() -> Any:
        sent = 0
        with path.open("rb") as src:
            while chunk := src.read(1 << 20):
                sent += len(chunk)
                report({**event, "status": f"pushing {layer.digest.split(':')[1][:12]}",
                        "completed": sent})
                yield chunk

    patch = _send(http, "PATCH", location, content=body(),
                  headers={"Content-Type": "application/octet-stream",
                           "Content-Length": str(layer.size)})
    _check(patch)
    location = patch.headers.get("location", location)
    sep = "&" if "?" in location else "?"
    _check(_send(http, "PUT", f"{location}{sep}digest={layer.digest}"))


def _get(http: httpx.Client, url: str, **kwargs: Any) -> httpx.Response:
    return _send(http, "GET", url, **kwargs)


def _send(http: httpx.Client, method: str, url: str, **kwargs: Any) -> httpx.Response:
    try:
        return http.request(method, url, **kwargs)
    except httpx.TransportError as exc:
        raise RegistryError(f"could not reach the registry: {exc}") from exc


def _check(resp: httpx.Response) -> None:
    if resp.status_code < 400:
        return
    if not resp.is_stream_consumed:
        resp.read()
    try:
        errors = resp.json().get("errors") or [{}]
        message = errors[0].get("message") or resp.text
    except ValueError:
        message = resp.text or resp.reason_phrase
    raise RegistryError(f"registry answered {resp.status_code}: {message}",
                        404 if resp.status_code == 404 else 500)


__all__ = ["RegistryError", "StoreError", "pull", "push"]
