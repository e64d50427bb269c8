"""Create a model from an existing one or an uploaded GGUF, as Ollama's /api/create does.

Everything is checked before anything is written: the base must exist, uploaded blobs must
be in the store and an uploaded GGUF sound (models.gguf_check), parameters must be option
names, the template must compile. Only then are the small layers written (content-addressed,
so harmless) and, last, the manifest.

`check` does every check that can be made before the first progress line, so the server can
run it before its streamed answer starts and answer a plain 400 or 404; `create` does the
rest and the work, reporting progress. An uploaded GGUF's metadata is read after the
"parsing GGUF" line, so what only its contents can refuse (adapters that must fit it, a
quantize of it) comes later, as the stream's last line.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from roost import config as settings
from roost.chat import sandbox
from roost.chat import template as templates
from roost.core import OptionError, check_options
from roost.models import config_blob, gguf_check, gguf_meta, link, modelfile, quantize
from roost.models.names import Name
from roost.models.resolve import NotFound, resolve
from roost.models.store import (
    ADAPTER_MEDIA_TYPE,
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
    adapters: dict[str, str] = field(default_factory=dict)  # ADAPTER: name -> uploaded digest
    quantize: str | None = None  # a type name: quantize the weights to it
    # The minimum Ollama version the model asks for (Modelfile REQUIRES). Roost is not Ollama
    # and its version numbers are its own, so it keeps the value in the model's config (for
    # show and a printed Modelfile) but never refuses or warns about a model because of it.
    requires: str | None = None
    parser: str | None = None  # Ollama's built-in output parser name; generate reads tool calls
    cancelled: Callable[[], bool] = lambda: False  # true once nobody waits for the result


@dataclass
class Plan:
    """What `check` found, so the work does not look it up again."""

    name: Name
    target: str | None  # the quantization type asked for
    weights: str | None = None  # FROM an uploaded GGUF: its digest (checked, not yet parsed)
    base: tuple[dict[str, Layer], dict[str, Any]] | None = None  # FROM a model: layers, config
    adapters: list[Layer] | None = None  # checked already (FROM a model); None: not yet


def check(store: Store, spec: Spec) -> Plan:
    """Every check that can be made before the first progress line; raises InvalidName,
    CreateError (a 400) or NotFound (a 404, the base model) and writes nothing."""
    name = Name.parse(spec.name)
    _check(spec)
    target = _quantize_target(spec)
    for file, digest in spec.adapters.items():
        _adapter_path(store, file, digest)
    if spec.files:
        return Plan(name, target, weights=_uploaded(store, spec))
    layers, config = _from_model(store, spec)
    adapters = _adapters(store, spec, layers, config)
    if target is not None:
        try:
            quantize.check_source(quantize.source_type(str(config.get("file_type") or "unknown")),
                                  target)
        except quantize.QuantizeError as exc:
            raise CreateError(str(exc)) from exc
    return Plan(name, target, base=(layers, config), adapters=adapters)


def create(store: Store, spec: Spec, report: Callable[[dict[str, Any]], None],
           plan: Plan | None = None) -> None:
    """Build the model; `plan` is `check`'s answer when the caller ran it already."""
    plan = plan or check(store, spec)
    created: set[str] = set()  # digests written by this create: "creating new layer"
    base_layers, config = plan.base or _from_file(store, spec, plan.weights, report, created)
    adapters = plan.adapters if plan.adapters is not None else _adapters(store, spec, base_layers,
                                                                         config)
    base_layers, config = _quantized(store, spec, plan.target, base_layers, config, report, created)
    if spec.requires:
        config = {**config, "requires": modelfile.requires_version(spec.requires)}
    if spec.parser:
        config = {**config, "parser": spec.parser}
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
        layers[media_type] = _write_text(store, text, media_type, created)
    config_layer = store.write_bytes(config_blob.encode(config), CONFIG_MEDIA_TYPE)
    order = [MODEL_MEDIA_TYPE, TEMPLATE_MEDIA_TYPE, SYSTEM_MEDIA_TYPE, PARAMS_MEDIA_TYPE,
             MESSAGES_MEDIA_TYPE, LICENSE_MEDIA_TYPE]
    final = [layers[m] for m in order if m in layers] + adapters
    for layer in final:  # Ollama's lines, in the manifest's order
        new = "creating new" if layer.digest in created else "using existing"
        report({"status": f"{new} layer {layer.digest}"})
    report({"status": "writing manifest"})
    store.put(plan.name, config_layer, final)
    report({"status": "success"})


def _write_text(store: Store, text: str, media_type: str, created: set[str]) -> Layer:
    data = text.encode()
    digest = f"sha256:{hashlib.sha256(data).hexdigest()}"
    if not store.has_blob(digest, len(data)):
        created.add(digest)
    return store.write_bytes(data, media_type)


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
    if spec.requires:
        try:
            modelfile.requires_version(spec.requires)
        except ValueError as exc:
            raise CreateError(str(exc)) from exc


def _uploaded(store: Store, spec: Spec) -> str:
    """The uploaded weights' digest: present, if linked still the file that was hashed, and a
    sound GGUF (a bounded walk of its header: before anything reads it, llama.cpp least of all)."""
    ggufs = [d for f, d in spec.files.items() if f.endswith(".gguf")] or list(spec.files.values())
    digest = wire_digest(ggufs[0])
    if not store.has_blob(digest):
        raise CreateError(f"blob {digest} was not uploaded")
    try:
        gguf_check.check(link.verified(store, digest))
    except (link.StaleLink, gguf_check.InvalidGGUF) as exc:
        raise CreateError(str(exc)) from exc
    except OSError as exc:  # a linked file that cannot be read
        raise CreateError(f"blob {digest} cannot be read: {exc.strerror or exc}") from exc
    return digest


def _from_file(store: Store, spec: Spec, digest: str | None,
               report: Callable[[dict[str, Any]], None],
               created: set[str]) -> tuple[dict[str, Layer], dict[str, Any]]:
    assert digest is not None
    path = store.blob_path(digest)  # a linked file was checked unchanged by `check`
    report({"status": "parsing GGUF"})
    try:
        config, gguf_template = config_blob.build(path)  # checked as sound by `check`
    except (ValueError, OSError) as exc:
        raise CreateError(f"{next(iter(spec.files))} is not a GGUF model: {exc}") from exc
    layers = {MODEL_MEDIA_TYPE: Layer(MODEL_MEDIA_TYPE, digest, path.stat().st_size)}
    if gguf_template and spec.template is None:
        layers[TEMPLATE_MEDIA_TYPE] = _write_text(store, gguf_template, TEMPLATE_MEDIA_TYPE,
                                                  created)
    return layers, config


def _from_model(store: Store, spec: Spec) -> tuple[dict[str, Layer], dict[str, Any]]:
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


def _quantize_target(spec: Spec) -> str | None:
    try:
        return quantize.parse_type(spec.quantize) if spec.quantize else None
    except quantize.QuantizeError as exc:
        raise CreateError(str(exc)) from exc


def _quantized(store: Store, spec: Spec, target: str | None, layers: dict[str, Layer],
               config: dict[str, Any], report: Callable[[dict[str, Any]], None],
               created: set[str]) -> tuple[dict[str, Layer], dict[str, Any]]:
    """The weights quantized to `target` (a new blob) and the config that says so."""
    if target is None:
        return layers, config
    source = quantize.source_type(str(config.get("file_type") or "unknown"))
    try:
        quantize.check_source(source, target)
        path = link.verified(store, layers[MODEL_MEDIA_TYPE].digest)
        layer, new = quantize.quantize(store, path, source, target, settings.num_threads(),
                                       report, spec.cancelled)
    except (quantize.QuantizeError, link.StaleLink) as exc:
        raise CreateError(str(exc)) from exc
    if new:
        created.add(layer.digest)
    meta, _ = gguf_meta.read(store.blob_path(layer.digest), want_tokens=False)
    info = {**(config.get("model_info") or {}), "general.file_type": meta.kv.get("general.file_type")}
    config = {**config, "file_type": meta.quantization, "model_info": info}
    return {**layers, MODEL_MEDIA_TYPE: Layer(MODEL_MEDIA_TYPE, layer.digest, layer.size)}, config


def _adapters(store: Store, spec: Spec, layers: dict[str, Layer],
              config: dict[str, Any]) -> list[Layer]:
    """The LoRA adapters the model gets: the base model's, then those sent (checked first)."""
    inherited = _base_adapters(store, spec)
    if not spec.adapters:
        return inherited
    weights = store.blob_path(layers[MODEL_MEDIA_TYPE].digest)
    shapes = {t.name: t.shape for t in gguf_meta.read(weights, want_tokens=False)[0].tensors}
    sent = [_adapter(store, file, digest, str(config.get("architecture") or ""), shapes)
            for file, digest in spec.adapters.items()]
    return inherited + [layer for layer in sent if layer not in inherited]


def _adapter(store: Store, file: str, digest: str, arch: str,
             shapes: dict[str, tuple[int, ...]]) -> Layer:
    """One uploaded adapter, refused (400) unless llama.cpp will be able to apply it."""
    path = _adapter_path(store, file, digest)
    try:
        gguf_check.check(path)
        meta, _ = gguf_meta.read(path, want_tokens=False)
    except (ValueError, OSError) as exc:  # InvalidGGUF and GGUFError are ValueErrors
        raise CreateError(f"adapter '{file}': {exc}") from exc
    kind, lora = meta.kv.get("general.type"), meta.kv.get("adapter.type")
    if kind != "adapter" or lora != "lora":
        raise CreateError(f"adapter '{file}' is not a LoRA adapter GGUF "
                          f"(general.type {kind!r}, adapter.type {lora!r})")
    if meta.architecture != arch:
        raise CreateError(f"adapter '{file}' is for the {meta.architecture or 'unknown'} "
                          f"architecture, the model is {arch}")
    for tensor in meta.tensors:
        _check_lora_tensor(file, tensor, shapes)
    return Layer(ADAPTER_MEDIA_TYPE, wire_digest(digest), path.stat().st_size)


def _adapter_path(store: Store, file: str, digest: str) -> Path:
    try:
        path = store.blob_path(digest)
    except StoreError as exc:
        raise CreateError(f"adapter '{file}': {exc}") from exc
    if not path.is_file():
        raise CreateError(f"adapter '{file}': blob {wire_digest(digest)} was not uploaded")
    return path


def _check_lora_tensor(file: str, tensor: gguf_meta.TensorInfo,
                       shapes: dict[str, tuple[int, ...]]) -> None:
    """llama.cpp's rule: for W of shape (in, out), lora_a is (in, r) and lora_b is (r, out)."""
    base, _, part = tensor.name.rpartition(".lora_")
    if part not in ("a", "b"):
        raise CreateError(f"adapter '{file}': {tensor.name} is not a LoRA tensor")
    want = shapes.get(base)
    if want is None:
        raise CreateError(f"adapter '{file}': the model has no tensor {base}")
    side = 0 if part == "a" else 1
    if base != "token_embd.weight" and tensor.shape[side] != want[side]:
        raise CreateError(f"adapter '{file}': {tensor.name} has shape {list(tensor.shape)}, "
                          f"which does not fit {base} {list(want)}")


def _base_adapters(store: Store, spec: Spec) -> list[Layer]:
    """A model made FROM another keeps that model's adapters."""
    if not spec.base or spec.files:
        return []
    try:
        manifest = resolve(store, spec.base).manifest
    except (NotFound, ValueError):
        return []
    return [layer for layer in manifest.layers if layer.media_type == ADAPTER_MEDIA_TYPE]
