"""Embeddings from the chat model by mean pooling, as llama.cpp computes them."""

from __future__ import annotations

import math

import ollama

from tests.conftest import MODEL, Server


def cos(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


def test_embed_batch_is_normalised_and_meaningful(pulled: Server) -> None:
    texts = ["The cat sat on the mat.", "A kitten is sitting on a rug.",
             "Quarterly tax filing deadlines for corporations."]
    with pulled.client() as c:
        r = c.post("/api/embed", json={"model": MODEL, "input": texts}).json()
    vecs = r["embeddings"]
    assert len(vecs) == 3 and all(len(v) == 896 for v in vecs)
    assert all(math.isclose(math.sqrt(sum(x * x for x in v)), 1.0, rel_tol=1e-4) for v in vecs)
    assert cos(vecs[0], vecs[1]) > cos(vecs[0], vecs[2])
    assert r["prompt_eval_count"] > 10 and isinstance(r["total_duration"], int)


def test_dimensions_and_truncate(pulled: Server) -> None:
    long_text = "word " * 300
    small = {"num_ctx": 128}
    with pulled.client() as c:
        short = c.post("/api/embed", json={"model": MODEL, "input": "hello", "dimensions": 64}).json()
        refused = c.post("/api/embed", json={"model": MODEL, "input": long_text, "truncate": False,
                                             "options": small})
        cut = c.post("/api/embed", json={"model": MODEL, "input": long_text, "options": small})
        empty = c.post("/api/embed", json={"model": MODEL, "input": ""}).json()
        bad = c.post("/api/embed", json={"model": MODEL, "input": "x", "dimensions": 0})
    assert len(short["embeddings"][0]) == 64
    assert math.isclose(sum(x * x for x in short["embeddings"][0]), 1.0, rel_tol=1e-4)
    assert refused.status_code == 400 and "context" in refused.json()["error"]
    assert cut.status_code == 200 and len(cut.json()["embeddings"]) == 1
    assert cut.json()["prompt_eval_count"] == 128
    assert empty["embeddings"] == []
    assert bad.status_code == 400


def test_legacy_endpoint_and_official_client(pulled: Server) -> None:
    client = ollama.Client(host=pulled.url)
    legacy = client.embeddings(model=MODEL, prompt="hello world")
    assert len(legacy.embedding) == 896
    new = client.embed(model=MODEL, input=["hello world"], dimensions=32)
    assert len(new.embeddings[0]) == 32


def test_a_large_embedding_batch_does_not_kill_the_runner(pulled: Server) -> None:
    """1200 vectors are one runner message of about 20 MB, over the old 16 MiB line limit."""
    with pulled.client() as c:
        r = c.post("/api/embed", json={"model": MODEL, "input": [f"w{i}" for i in range(1200)]})
        assert r.status_code == 200, r.text[:300]
        assert len(r.json()["embeddings"]) == 1200
        r = c.post("/api/generate", json={"model": MODEL, "prompt": "Say hi.", "stream": False,
                                          "options": {"temperature": 0, "num_predict": 4}})
        assert r.status_code == 200
