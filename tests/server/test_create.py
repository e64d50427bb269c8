"""Creating, copying and uploading models through the API, with the official client."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import ollama
import pytest

from roost.models import catalog
from roost.models.names import Name
from tests.conftest import MODEL, Server, greedy
from tests.support import gguf_files


@pytest.fixture()
def client(pulled: Server) -> ollama.Client:
    return ollama.Client(host=pulled.url)


def manifests(server: Server) -> set[str]:
    return {str(p.relative_to(server.home / "manifests"))
            for p in (server.home / "manifests").rglob("*") if p.is_file()}


def test_create_from_model_with_system_and_parameters(client: ollama.Client) -> None:
    client.create(model="pirate:1", from_=MODEL, system="You are a pirate. Always say Arr.",
                  parameters={"temperature": 0, "num_predict": 12, "stop": ["\n\n"]})
    info = client.show("pirate:1")
    assert "SYSTEM \"\"\"You are a pirate. Always say Arr.\"\"\"" in (info.modelfile or "")
    assert "num_predict" in (info.parameters or "") and "stop" in (info.parameters or "")
    assert info.details is not None and info.details.family == "qwen2"
    r = client.generate(model="pirate:1", prompt="Hello!")
    assert r.eval_count is not None and r.eval_count <= 12
    client.copy("pirate:1", "pirate:2")
    assert {"pirate:1", "pirate:2"} <= {m.model for m in client.list().models}
    client.delete("pirate:1")
    client.delete("pirate:2")
    assert not {"pirate:1", "pirate:2"} & {m.model for m in client.list().models}
    # the shared weights survive: the original model still answers
    assert client.generate(model=MODEL, prompt="Hi", options=greedy(3)).response


def test_create_from_uploaded_gguf(client: ollama.Client, tmp_path: Path) -> None:
    gemma = catalog.find(Name.parse("gemma3:270m"))
    assert gemma is not None
    path = tmp_path / "gemma.gguf"
    with path.open("wb") as out:
        for chunk in catalog.read_parts(catalog.part_paths(gemma)):
            out.write(chunk)
    digest = client.create_blob(path)
    assert digest == f"sha256:{gemma.sha256}"
    client.create(model="my-gemma", files={"gemma.gguf": digest}, template=catalog.GEMMA_TEMPLATE)
    info = client.show("my-gemma")
    assert info.details is not None and info.details.family == "gemma3"
    r = client.generate(model="my-gemma", prompt="The capital of France is", raw=True,
                        options=greedy(4))
    assert r.response
    client.delete("my-gemma")


def test_bad_creates_change_nothing(client: ollama.Client, pulled: Server) -> None:
    before = manifests(pulled)
    cases = [
        dict(model="x1", from_=MODEL, parameters={"no_such_option": 1}),
        dict(model="x2", from_=MODEL, template="{% if %}"),
        dict(model="x3", from_="missing-base:1"),
        dict(model="bad name!", from_=MODEL),
        dict(model="x4", files={"m.gguf": "sha256:" + "0" * 64}),
    ]
    statuses = []
    for kwargs in cases:
        with pytest.raises(ollama.ResponseError) as err:
            client.create(**kwargs)  # type: ignore[arg-type]
        statuses.append(err.value.status_code)
    assert statuses == [400, 400, 404, 400, 400]
    with pytest.raises(ollama.ResponseError) as err:
        client.copy("missing:1", "y")
    assert err.value.status_code == 404
    assert manifests(pulled) == before


def test_blob_digest_is_verified(pulled: Server) -> None:
    data = b"not what the digest says"
    wrong = "sha256:" + hashlib.sha256(b"other").hexdigest()
    right = "sha256:" + hashlib.sha256(data).hexdigest()
    with pulled.client() as c:
        assert c.post(f"/api/blobs/{wrong}", content=data).status_code == 400
        assert c.head(f"/api/blobs/{wrong}").status_code == 404
        assert c.post(f"/api/blobs/{right}", content=data).status_code == 201
        assert c.head(f"/api/blobs/{right}").status_code == 200
        assert c.head("/api/blobs/sha256:../../etc").status_code in (400, 404)
        assert c.post("/api/blobs/md5-abc", content=data).status_code == 400
    assert not list((pulled.home / "blobs").glob("*.partial"))


def test_create_naming_a_malformed_digest_is_a_400(pulled: Server) -> None:
    """Found by the fuzzer (tests/server/test_fuzz.py): `"files": {"": ""}` was a 500."""
    with pulled.client() as c:
        for files in ({"": ""}, {"m.gguf": "sha256:xyz"}, {"m.gguf": "../../etc/passwd"},
                      {"ok.gguf": f"sha256:{'0' * 64}", "bad.gguf": "md5:1"}):
            r = c.post("/api/create", json={"model": "x5", "files": files, "stream": False})
            assert r.status_code == 400 and "invalid digest" in r.json()["error"], (files, r.text)
            r = c.post("/api/create", json={"model": "x5", "files": files})  # streamed: the same
            assert r.status_code == 400 and "invalid digest" in r.json()["error"], (files, r.text)


@pytest.mark.parametrize(("body", "status", "words"), [
    ({}, 400, "neither 'from' nor 'files' was specified"),
    ({"from": MODEL, "parameters": {"no_such_option": 1}}, 400, "no_such_option"),
    ({"from": MODEL, "parameters": {"temperature": "hot"}}, 400, "temperature"),
    ({"from": MODEL, "template": "{% if %}"}, 400, "template"),
    ({"from": MODEL, "messages": [{"role": "robot", "content": "hi"}]}, 400, "robot"),
    ({"from": MODEL, "requires": "soon"}, 400, "REQUIRES 'soon'"),
    ({"from": MODEL, "quantize": "Q9_X"}, 400, "unsupported quantization type"),
    ({"from": MODEL, "quantize": "Q8_0"}, 400, "cannot be quantized up"),
    ({"from": MODEL, "adapters": {"l.gguf": "sha256:" + "1" * 64}}, 400, "was not uploaded"),
    ({"files": {"m.gguf": "sha256:" + "0" * 64}}, 400, "was not uploaded"),
    ({"from": "./m.gguf"}, 400, "invalid model name"),
    ({"from": "missing-base:1"}, 404, "base model 'missing-base:1' not found"),
])
def test_a_streamed_create_refuses_bad_input_before_it_starts(
        pulled: Server, body: dict[str, object], status: int, words: str) -> None:
    """Found by a tester: a streamed create answered these as 200 with one error line. Before
    any bytes are written the status code applies, as with `"stream": false`."""
    before = manifests(pulled)
    with pulled.client() as c:
        for stream in (True, False):
            r = c.post("/api/create", json={"model": "x6", "stream": stream, **body})
            assert r.status_code == status, (stream, r.text)
            assert r.headers["content-type"] == "application/json", r.headers
            assert list(r.json()) == ["error"] and words in r.json()["error"], r.text
    assert manifests(pulled) == before


def test_what_only_the_work_finds_is_the_streams_last_line(pulled: Server) -> None:
    """A blob that is no GGUF is refused up front; an adapter that does not fit the uploaded
    weights is found once "parsing GGUF" is out: an error line in a 200."""
    text = b"plain text, not weights"
    weights, adapter = gguf_files.tiny("qwen2"), gguf_files.tiny("llama")
    digests = {}
    with pulled.client() as c:
        for data in (text, weights, adapter):
            digests[data] = "sha256:" + hashlib.sha256(data).hexdigest()
            assert c.post(f"/api/blobs/{digests[data]}", content=data).status_code == 201
        r = c.post("/api/create", json={"model": "x7", "files": {"w.gguf": digests[text]}})
        assert r.status_code == 400 and "invalid GGUF" in r.json()["error"], r.text
        r = c.post("/api/create", json={"model": "x7", "files": {"w.gguf": digests[weights]},
                                        "adapters": {"a.gguf": digests[adapter]}})
    lines = [json.loads(line) for line in r.text.splitlines()]
    assert r.status_code == 200 and lines[0] == {"status": "parsing GGUF"}, r.text
    assert list(lines[-1]) == ["error"] and "not a LoRA adapter" in lines[-1]["error"], r.text
    assert "x7" not in str(manifests(pulled))


def test_requires_is_kept_in_the_config_and_inherited(pulled: Server) -> None:
    with pulled.client() as c:
        for model, body in (("req-1", {"from": MODEL, "requires": "v0.5.0"}),
                            ("req-2", {"from": "req-1"}),
                            ("req-3", {"from": "req-1", "requires": "0.9"})):
            r = c.post("/api/create", json={"model": model, "stream": False, **body})
            assert r.status_code == 200 and r.json() == {"status": "success"}, r.text
    try:
        assert [config(pulled, m).get("requires") for m in ("req-1", "req-2", "req-3")] == \
            ["0.5.0", "0.5.0", "0.9"]
        assert "requires" not in config(pulled, MODEL)
    finally:
        with pulled.client() as c:
            for model in ("req-1", "req-2", "req-3"):
                c.request("DELETE", "/api/delete", json={"model": model})


def config(server: Server, model: str) -> dict[str, object]:
    """The model's config blob, as stored."""
    n = Name.parse(model)
    path = server.home / "manifests" / n.host / n.namespace / n.model / n.tag
    digest = json.loads(path.read_text())["config"]["digest"]
    return json.loads((server.home / "blobs" / digest.replace(":", "-")).read_text())  # type: ignore[no-any-return]
