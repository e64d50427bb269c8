"""Malformed GGUF files through the real server: the blob upload, /api/create and /v2.

Each file is refused with a 400 and a one-line reason before any runner sees it, and is not
kept; the real model, already in the store, still makes a model; a file that passes the check
but that llama.cpp cannot load fails only the request that loads it.
"""

from __future__ import annotations

import hashlib
import time

import httpx2 as httpx
import pytest

from roost.models import catalog
from roost.models.names import Name
from tests.conftest import MODEL, Server, greedy
from tests.support import gguf_files

LIMIT = 5.0  # seconds for a refusal, from the request to the answer (the check itself: < 1 s)


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _malformed() -> dict[str, bytes]:
    real = gguf_files.real_header()
    keys, n_keys = gguf_files.keys_before_vocabulary()
    tiny = gguf_files.tiny()
    return {
        "truncated-header": real.raw[:4096],
        "absurd-counts": tiny[:8] + (1 << 62).to_bytes(8, "little") + tiny[16:],
        "alignment-0": tiny.replace(gguf_files.u32_kv("general.alignment", 32),
                                    gguf_files.u32_kv("general.alignment", 0)),
        "tensor-past-end": tiny[:-1],
        "overflowing-shape": gguf_files.header(keys, n_keys, gguf_files.with_tensor(
            0, shape=(1 << 40, 1 << 40))),
    }


@pytest.mark.parametrize("case", list(_malformed()))
def test_a_malformed_upload_is_refused_and_not_kept(pulled: Server, case: str) -> None:
    data = _malformed()[case]
    with pulled.client() as c:
        started = time.monotonic()
        r = c.post(f"/api/blobs/{digest(data)}", content=data)
        elapsed = time.monotonic() - started
        assert r.status_code == 400, r.text
        message = r.json()["error"]
        assert message.startswith("invalid GGUF: ") and "\n" not in message, message
        assert elapsed < LIMIT, elapsed
        assert c.head(f"/api/blobs/{digest(data)}").status_code == 404
        r = c.post("/api/create", json={"model": f"bad-{case}", "files": {"m.gguf": digest(data)},
                                        "stream": False})
        assert r.status_code == 400 and "was not uploaded" in r.json()["error"], r.text
    assert not list((pulled.home / "blobs").glob("*.partial"))


def _plant(server: Server, data: bytes) -> str:
    """A malformed blob already in the store, as one uploaded before the check existed."""
    blobs = server.home / "blobs"
    (blobs / digest(data).replace(":", "-")).write_bytes(data)
    return digest(data)


@pytest.mark.parametrize("case", ["empty", "text", "truncated-header", "tensor-past-end",
                                  "overflowing-shape"])
def test_create_from_a_malformed_blob_is_a_400(pulled: Server, case: str) -> None:
    data = {"empty": b"", "text": b"{{ .Prompt }}", **_malformed()}[case]
    with pulled.client() as c:
        if case in ("empty", "text"):  # no GGUF magic: stored as any blob would be
            assert c.post(f"/api/blobs/{digest(data)}", content=data).status_code == 201
            blob = digest(data)
        else:
            blob = _plant(pulled, data)
        started = time.monotonic()
        r = c.post("/api/create", json={"model": f"bad-{case}", "files": {"m.gguf": blob},
                                        "stream": False})
        elapsed = time.monotonic() - started
        assert r.status_code == 400, r.text
        message = r.json()["error"]
        assert message.startswith("invalid GGUF: ") and "\n" not in message, message
        assert elapsed < LIMIT, elapsed
        assert c.post("/api/show", json={"model": f"bad-{case}"}).status_code == 404


def test_the_real_model_still_makes_a_model(pulled: Server) -> None:
    entry = catalog.find(Name.parse(MODEL))
    assert entry is not None
    with pulled.client() as c:
        r = c.post("/api/create", json={"model": "qwen-from-blob", "stream": False,
                                        "files": {"qwen.gguf": entry.digest}})
        assert r.status_code == 200 and r.json() == {"status": "success"}, r.text
        info = c.post("/api/show", json={"model": "qwen-from-blob"}).json()
        assert info["details"]["family"] == "qwen2"
        assert c.request("DELETE", "/api/delete", json={"model": "qwen-from-blob"}).status_code == 200


def test_a_sound_file_llama_cpp_cannot_load_fails_only_its_request(pulled: Server) -> None:
    """tiny(): structurally sound, so it is stored and made a model, but it has none of
    qwen2's keys or tensors; loading it fails that request with llama.cpp's reason and a
    header that tells OpenAI's clients not to retry, and the server and the real model go on."""
    data = gguf_files.tiny()
    with pulled.client() as c:
        assert c.post(f"/api/blobs/{digest(data)}", content=data).status_code == 201
        r = c.post("/api/create", json={"model": "tiny-unloadable", "stream": False,
                                        "files": {"t.gguf": digest(data)}})
        assert r.status_code == 200, r.text
        r = c.post("/api/generate", json={"model": "tiny-unloadable", "prompt": "Hi",
                                          "stream": False, "options": greedy(2)})
        assert r.status_code == 500 and r.headers.get("x-should-retry") == "false", (r.text, r.headers)
        error = r.json()["error"]  # llama.cpp's own reason, on one line
        assert error.startswith("llama.cpp could not load ") and "no reason given" not in error, error
        assert "Traceback" not in r.text and "\n" not in error
        r = c.post("/v1/chat/completions", json={"model": "tiny-unloadable", "max_tokens": 2,
                                                 "messages": [{"role": "user", "content": "Hi"}]})
        assert r.status_code == 500 and r.headers["x-should-retry"] == "false", r.text
        assert r.json()["error"]["message"] == error
        r = c.post("/api/generate", json={"model": MODEL, "prompt": "Hi", "stream": False,
                                          "options": greedy(2)})
        assert r.status_code == 200 and r.json()["done"], r.text
        assert c.request("DELETE", "/api/delete", json={"model": "tiny-unloadable"}).status_code == 200


def _v2_upload(c: httpx.Client, data: bytes) -> httpx.Response:
    r = c.post("/v2/library/up/blobs/uploads/")
    assert r.status_code == 202, r.text
    location = r.headers["location"]
    assert c.patch(location, content=data).status_code == 202
    return c.put(location, params={"digest": digest(data)})


def test_the_registry_refuses_a_malformed_gguf_and_a_manifest_naming_one(pulled: Server) -> None:
    bad = _malformed()["tensor-past-end"]
    text = b"not weights at all"
    with pulled.client() as c:
        r = _v2_upload(c, bad)
        assert r.status_code == 400 and "invalid GGUF: " in r.json()["errors"][0]["message"], r.text
        assert c.head(f"/v2/library/up/blobs/{digest(bad)}").status_code == 404
        assert _v2_upload(c, text).status_code == 201  # no GGUF magic: any blob
        config = b"{}"
        assert _v2_upload(c, config).status_code == 201
        manifest = {"schemaVersion": 2, "config": {"mediaType": "application/vnd.docker.container"
                                                   ".image.v1+json", "digest": digest(config),
                                                   "size": len(config)},
                    "layers": [{"mediaType": "application/vnd.ollama.image.model",
                                "digest": digest(text), "size": len(text)}]}
        r = c.put("/v2/library/up/manifests/latest", json=manifest)
        assert r.status_code == 400, r.text
        assert r.json()["errors"][0]["message"].startswith("invalid GGUF: the file does not start")
        assert c.get("/v2/library/up/manifests/latest").status_code == 404


def test_a_sound_upload_is_kept(pulled: Server) -> None:
    data = gguf_files.tiny()
    with pulled.client() as c:
        assert c.post(f"/api/blobs/{digest(data)}", content=data).status_code == 201
        assert c.head(f"/api/blobs/{digest(data)}").status_code == 200
