"""Resolve a model name to everything needed to describe, prompt and load it."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from roost.models import config_blob, link
from roost.models.names import Name
from roost.models.store import (
    ADAPTER_MEDIA_TYPE,
    LICENSE_MEDIA_TYPE,
    MESSAGES_MEDIA_TYPE,
    MODEL_MEDIA_TYPE,
    PARAMS_MEDIA_TYPE,
    SYSTEM_MEDIA_TYPE,
    TEMPLATE_MEDIA_TYPE,
    Layer,
    Manifest,
    Store,
)


class NotFound(LookupError):
    pass


@dataclass(frozen=True)
class ModelRef:
    name: Name
    manifest: Manifest
    store: Store

    @property
    def id(self) -> str:
        return self.manifest.digest_hex

    @property
    def weights(self) -> Path:
        """The weights to load; a file linked in place (create --link) is checked first, so a
        file changed or removed since is a clear error here, never garbage in a runner."""
        layer = self._weights_layer()
        try:
            return link.verified(self.store, layer.digest)
        except link.StaleLink as exc:
            raise NotFound(f"model '{self.name}': {exc}") from exc

    @property
    def weights_path(self) -> Path:
        """Where the weights blob is, unchecked: for describing the model, not loading it."""
        return self.store.blob_path(self._weights_layer().digest)

    @property
    def adapters(self) -> list[Path]:
        """The LoRA adapters to load, in the manifest's order, checked as `weights` is."""
        try:
            return [link.verified(self.store, la.digest) for la in self._adapter_layers()]
        except link.StaleLink as exc:
            raise NotFound(f"model '{self.name}': {exc}") from exc

    @property
    def adapter_paths(self) -> list[Path]:
        """Where the adapter blobs are, unchecked: for describing the model."""
        return [self.store.blob_path(la.digest) for la in self._adapter_layers()]

    def _adapter_layers(self) -> list[Layer]:
        return [la for la in self.manifest.layers if la.media_type == ADAPTER_MEDIA_TYPE]

    def _weights_layer(self) -> Layer:
        layer = self.manifest.layer(MODEL_MEDIA_TYPE)
        if layer is None:
            raise NotFound(f"model '{self.name}' has no weights")
        return layer

    def _text(self, media_type: str) -> str | None:
        layer = self.manifest.layer(media_type)
        return self.store.read_bytes(layer.digest).decode() if layer else None

    @cached_property
    def config(self) -> dict[str, Any]:
        return json.loads(self.store.read_bytes(self.manifest.config.digest))

    @cached_property
    def template(self) -> str | None:
        return self._text(TEMPLATE_MEDIA_TYPE)

    @cached_property
    def system(self) -> str | None:
        return self._text(SYSTEM_MEDIA_TYPE)

    @cached_property
    def license(self) -> str | None:
        return self._text(LICENSE_MEDIA_TYPE)

    @cached_property
    def params(self) -> dict[str, Any]:
        text = self._text(PARAMS_MEDIA_TYPE)
        return json.loads(text) if text else {}

    @cached_property
    def messages(self) -> list[dict[str, Any]]:
        text = self._text(MESSAGES_MEDIA_TYPE)
        return json.loads(text) if text else []

    @property
    def details(self) -> dict[str, Any]:
        return config_blob.details(self.config)

    @property
    def capabilities(self) -> list[str]:
        """As Ollama: tools and thinking follow from the template the model is prompted with,
        so a Modelfile's TEMPLATE can give them (or take them away)."""
        caps = list(self.config.get("capabilities") or ["completion"])
        if self.config.get("fim") and "insert" not in caps:  # fill-in-the-middle tokens
            caps.append("insert")
        if self.template is None:
            return caps
        caps = [c for c in caps if c not in ("tools", "thinking")]
        caps += [cap for cap, mark in (("tools", "tools"), ("thinking", "<think>")) if mark in self.template]
        return caps


def resolve(store: Store, name: str) -> ModelRef:
    parsed = Name.parse(name)
    manifest = store.get(parsed)
    if manifest is None:
        raise NotFound(f"model '{name}' not found")
    path = store.find_manifest_path(parsed)
    assert path is not None
    rel = path.relative_to(store.manifests).parts
    return ModelRef(Name(*rel), manifest, store)
