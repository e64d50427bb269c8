"""Create a model from an existing one or an uploaded GGUF, as Ollama's /api/create does.

Everything is checked before anything is written: the base must exist, uploaded blobs must
be in the store and an uploaded GGUF sound (models.gguf_check), parameters must be option
names, the template must compile. Only then are the small layers written (content-addressed,
so harmless) and, last, the manifest.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from roost.chat import sandbox
from roost.chat import template as templates
from roost.core import OptionError, check_options
from roost.models import config_blob, gguf_check
from roost.models.names import Name
from roost.models.resolve import NotFound, resolve
from roost.models.store import (
    CONFIG_MEDIA_TYPE,
    LICENSE_MEDIA_TYPE,
    MESSAGES_MEDIA_TYPE,
    MODEL_MEDIA_TYPE,
    PARAMS_MEDIA_TYPE,
    SYSTEM_MEDIA_TYPE,
    TEMPLATE_MEDIA_TYPE,
    Layer,
    Store,
    StoreError,
    parse_digest,
    wire_digest,
)


class CreateError(ValueError):
    pass


@dataclass
class Spec:
    """The structured form of a Modelfile, as clients send it."""

    name: str
    base: str | None = None  # FROM an existing model
    files: dict[str, str] = field(default_factory=dict)  # FROM an uploaded GGUF: name -> digest
    template: str | None = None
    system: str | None = None
    license: str | list[str] | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    messages: list[dict[str, Any]] | None = None


def create(store: Store, spec: Spec, report: Callable[[dict[str, Any]], None]) -> None:
    name = Name.parse(spec.name)
    _check(spec)
    report({"status": "reading model metadata"})
    base_layers, config = _base(store, spec)
    layers = dict(base_layers)  # media type -> layer; a new value replaces the base's
    params = {**_params_of(store, base_layers.get(PARAMS_MEDIA_TYPE)), **spec.parameters}
    texts = {
        TEMPLATE_MEDIA_TYPE: spec.template,
        SYSTEM_MEDIA_TYPE: spec.system,
        LICENSE_MEDIA_TYPE: ("\n".join(spec.license) if isinstance(spec.license, list)
                             else spec.license),
        MESSAGES_MEDIA_TYPE: json.dumps(spec.messages) if spec.messages is not None else None,
        PARAMS_MEDIA_TYPE: json.dumps(params) if params else None,
    }
    for media_type, text in texts.items():
        if text is None:
            continue
        kind = media_type.rsplit(".", 1)[-1]
        layer = store.write_bytes(text.encode(), media_type)
        if base_layers.get(media_type) == layer:
            report({"status": f"using already created layer {layer.digest}"})
        else:
            report({"status": f"creating {kind} layer"})
        layers[media_type] = layer
    config_layer = store.write_bytes(config_blob.encode(config), CONFIG_MEDIA_TYPE)
    report({"status": "writing manifest"})
    order = [MODEL_MEDIA_TYPE, TEMPLATE_MEDIA_TYPE, SYSTEM_MEDIA_TYPE, PARAMS_MEDIA_TYPE,
             MESSAGES_MEDIA_TYPE, LICENSE_MEDIA_TYPE]
    store.put(name, config_layer, [layers[m] for m in order if m in layers])
    report({"status": "success"})


def _check(spec: Spec) -> None:
    if not spec.base and not spec.files:
        raise CreateError("neither 'from' nor 'files' was specified")
    for file, digest in spec.files.items():
        try:
            parse_digest(digest)
        except StoreError as exc:  # the client's mistake, not the store's: a 400
            raise CreateError(f"file '{file}': {exc}") from exc
    try:
        check_options(spec.parameters)
    except OptionError as exc:
        raise CreateError(str(exc)) from exc
    if spec.template is not None:
        try:
            sandbox.render(spec.template, [{"role": "user", "content": "test"}])
        except templates.TemplateRenderError as exc:
            raise CreateError(str(exc)) from exc
    for message in spec.messages or []:
        if message.get("role") not in ("system", "user", "assistant", "tool"):
            raise CreateError(f"invalid message role {message.get('role')!r}")


def _base(store: Store, spec: Spec) -> tuple[dict[str, Layer], dict[str, Any]]:
    if spec.files:
        ggufs = [d for f, d in spec.files.items() if f.endswith(".gguf")] or list(spec.files.values())
        digest = wire_digest(ggufs[0])
        if not store.has_blob(digest):
            raise CreateError(f"blob {digest} was not uploaded")
        path = store.blob_path(digest)
        try:
            gguf_check.check(path)  # before anything reads it, llama.cpp least of all
            config, gguf_template = config_blob.build(path)
        except gguf_check.InvalidGGUF as exc:
            raise CreateError(str(exc)) from exc
        except (ValueError, OSError) as exc:
            raise CreateError(f"{next(iter(spec.files))} is not a GGUF model: {exc}") from exc
        layers = {MODEL_MEDIA_TYPE: Layer(MODEL_MEDIA_TYPE, digest, path.stat().st_size)}
        if gguf_template and spec.template is None:
            layers[TEMPLATE_MEDIA_TYPE] = store.write_bytes(gguf_template.encode(), TEMPLATE_MEDIA_TYPE)
        return layers, config
    assert spec.base is not None
    try:
        ref = resolve(store, spec.base)
    except NotFound as exc:
        raise NotFound(f"base model '{spec.base}' not found") from exc
    return {layer.media_type: layer for layer in ref.manifest.layers}, dict(ref.config)


def _params_of(store: Store, layer: Layer | None) -> dict[str, Any]:
    return json.loads(store.read_bytes(layer.digest)) if layer else {}


def copy(store: Store, source: str, destination: str) -> None:
    ref = resolve(store, source)
    store.put(Name.parse(destination), ref.manifest.config, ref.manifest.layers)
