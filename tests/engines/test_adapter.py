"""ADAPTER: a LoRA GGUF stored as a layer, checked at create, and applied by llama.cpp at load.

The adapters are written here with the gguf package for the bundled qwen2.5-coder:0.5b, with
tensor shapes read from the model's own header: one whose B matrices are zero (the answer must
be the base model's, word for word), and one with large random values (the answer must change,
which also shows that models with different adapters do not share a runner).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import gguf
import numpy as np
import pytest

from roost.models import gguf_meta
from roost.models.resolve import resolve
from roost.models.store import ADAPTER_MEDIA_TYPE, Store
from tests.conftest import MODEL, Server, greedy, own_pulled_server, upload_blob
from tests.support.runner_procs import runner_pids

TARGETS = tuple(f"blk.{i}.attn_v.weight" for i in range(4))


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with own_pulled_server(tmp_path_factory.mktemp("adapter-home")) as server:
        yield server


@pytest.fixture(scope="module")
def shapes(srv: Server) -> dict[str, tuple[int, ...]]:
    meta, _ = gguf_meta.read(resolve(Store(srv.home), MODEL).weights, want_tokens=False)
    return {t.name: t.shape for t in meta.tensors}


def write_lora(path: Path, shapes: dict[str, tuple[int, ...]], *, b_scale: float = 0.0,
               arch: str = "qwen2", general_type: str = "adapter", rank: int = 4,
               targets: tuple[str, ...] = TARGETS, a_rows: int | None = None) -> Path:
    """A LoRA as llama.cpp reads it: for W (in, out), lora_a is (in, r) and lora_b is (r, out)
    in ggml's order, that is numpy arrays (r, in) and (out, r)."""
    rng = np.random.default_rng(1)
    w = gguf.GGUFWriter(str(path), arch)
    w.add_type(general_type)
    w.add_string("adapter.type", "lora")
    w.add_float32("adapter.lora.alpha", float(rank))
    for name in targets:
        n_in, n_out = shapes[name][:2]
        a = rng.standard_normal((rank, a_rows or n_in)).astype(np.float32)
        b = (rng.standard_normal((n_out, rank)) * b_scale).astype(np.float32)
        w.add_tensor(f"{name}.lora_a", a)
        w.add_tensor(f"{name}.lora_b", b)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def create(server: Server, name: str, digest: str) -> tuple[int, str]:
    with server.client() as c:
        r = c.post("/api/create", json={"model": name, "from": MODEL, "stream": False,
                                        "adapters": {"lora.gguf": digest}})
    return r.status_code, r.json().get("error", "")


def answer(server: Server, name: str) -> str:
    with server.client() as c:
        r = c.post("/api/generate", json={"model": name, "prompt": "Write a Python hello world.",
                                          "stream": False, "keep_alive": "1m",
                                          "options": greedy(12)})
    assert r.status_code == 200, r.text
    return str(r.json()["response"])


def embed(server: Server, name: str) -> np.ndarray:
    with server.client() as c:
        r = c.post("/api/embed", json={"model": name, "input": "def hello():", "keep_alive": "1m"})
    assert r.status_code == 200, r.text
    return np.array(r.json()["embeddings"][0])


def test_a_lora_is_stored_as_a_layer_and_applied_at_load(srv: Server, shapes: dict[str, tuple[int, ...]],
                                                         tmp_path: Path) -> None:
    zero = upload_blob(srv, write_lora(tmp_path / "zero.gguf", shapes))
    strong = upload_blob(srv, write_lora(tmp_path / "strong.gguf", shapes, b_scale=1.0))
    assert create(srv, "lora-zero:1", zero) == (200, "")
    assert create(srv, "lora-strong:1", strong) == (200, "")
    manifest = resolve(Store(srv.home), "lora-zero:1").manifest
    assert [la.digest for la in manifest.layers if la.media_type == ADAPTER_MEDIA_TYPE] == [zero]

    base = answer(srv, MODEL)
    assert answer(srv, "lora-zero:1") == base  # B = 0: the adapter adds nothing
    changed = answer(srv, "lora-strong:1")
    assert changed != base  # applied, and on a runner of its own
    assert len(runner_pids(srv)) == 3
    # Embeddings come from the adapted model too (its own embedding context).
    base_vec, zero_vec, strong_vec = (embed(srv, n) for n in (MODEL, "lora-zero:1", "lora-strong:1"))
    assert np.allclose(zero_vec, base_vec, atol=1e-5)
    assert not np.allclose(strong_vec, base_vec, atol=1e-3)
    # A model made FROM an adapted model keeps its adapter.
    with srv.client() as c:
        r = c.post("/api/create", json={"model": "lora-strong-child:1", "from": "lora-strong:1",
                                        "system": "Be brief.", "stream": False})
        assert r.status_code == 200, r.text
        for name in (MODEL, "lora-zero:1", "lora-strong:1"):
            c.post("/api/generate", json={"model": name, "keep_alive": 0})
    child = resolve(Store(srv.home), "lora-strong-child:1").manifest
    assert [la.digest for la in child.layers if la.media_type == ADAPTER_MEDIA_TYPE] == [strong]


@pytest.mark.parametrize(("kind", "words"), [
    ("arch", "is for the llama architecture, the model is qwen2"),
    ("type", "is not a LoRA adapter GGUF (general.type 'model'"),
    ("shape", "which does not fit blk.0.attn_v.weight"),
    ("tensor", "the model has no tensor blk.99.attn_v.weight"),
    ("missing", "was not uploaded"),
    ("garbage", "invalid GGUF"),
])
def test_an_adapter_that_cannot_apply_is_a_400(srv: Server, shapes: dict[str, tuple[int, ...]],
                                               tmp_path: Path, kind: str, words: str) -> None:
    path = tmp_path / f"{kind}.gguf"
    if kind == "arch":
        write_lora(path, shapes, arch="llama")
    elif kind == "type":
        write_lora(path, shapes, general_type="model")
    elif kind == "shape":
        write_lora(path, shapes, a_rows=100)
    elif kind == "tensor":
        write_lora(path, {**shapes, "blk.99.attn_v.weight": (896, 128)},
                   targets=("blk.99.attn_v.weight",))
    elif kind == "garbage":
        path.write_bytes(b"not a gguf at all")
    digest = "sha256:" + "0" * 64 if kind == "missing" else upload_blob(srv, path)
    status, error = create(srv, f"bad-{kind}:1", digest)
    assert status == 400 and words in error, error
    with srv.client() as c:
        assert c.post("/api/show", json={"model": f"bad-{kind}:1"}).status_code == 404
