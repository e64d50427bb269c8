"""Pull a catalog model into the store, yielding Ollama-shaped progress events.

The weights are streamed from the installed part packages into one blob while hashing; the
size and sha256 are checked before the blob gets its final name, and the manifest is
written last, so a failed pull leaves nothing a later command would trust.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from roost.models import catalog, config_blob
from roost.models.names import Name
from roost.models.store import (
    CONFIG_MEDIA_TYPE,
    MODEL_MEDIA_TYPE,
    PARAMS_MEDIA_TYPE,
    TEMPLATE_MEDIA_TYPE,
    Layer,
    Store,
)

Progress = dict[str, Any]


class ModelNotFound(LookupError):
    pass


def pull(store: Store, name: Name, report: Callable[[Progress], None]) -> None:
    """Pull `name` from the catalog, calling `report` with each progress event."""
    entry = catalog.find(name)
    if entry is None:
        raise ModelNotFound(f"pull model manifest: file does not exist: model '{name}' not found")
    report({"status": "pulling manifest"})
    status = f"pulling {entry.sha256[:12]}"

    def progress(done: int) -> None:
        report({"status": status, "digest": entry.digest, "total": entry.size, "completed": done})

    if not store.has_blob(entry.digest, entry.size):
        paths = catalog.part_paths(entry)
        progress(0)
        store.write_blob(catalog.read_parts(paths), entry.digest, entry.size, _throttled(progress))
        report({"status": "verifying sha256 digest"})
    progress(entry.size)
    config, gguf_template = config_blob.build(store.blob_path(entry.digest))
    layers = [Layer(MODEL_MEDIA_TYPE, entry.digest, entry.size)]
    template = entry.template or gguf_template
    if template:
        layers.append(store.write_bytes(template.encode(), TEMPLATE_MEDIA_TYPE))
    if entry.params:
        layers.append(store.write_bytes(json.dumps(entry.params).encode(), PARAMS_MEDIA_TYPE))
    config_layer = store.write_bytes(config_blob.encode(config), CONFIG_MEDIA_TYPE)
    report({"status": "writing manifest"})
    store.put(Name.parse(entry.name), config_layer, layers)
    report({"status": "success"})


def _throttled(fn: Callable[[int], None], every: float = 0.1) -> Callable[[int], None]:
    """Report at most every `every` seconds: one event per megabyte would flood a client."""
    last = 0.0

    def call(done: int) -> None:
        nonlocal last
        now = time.monotonic()
        if now - last >= every:
            last = now
            fn(done)

    return call
