"""Push to and pull from another Roost acting as a registry (the Ollama registry protocol)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import ollama
import pytest

from tests.conftest import MODEL, Server, greedy, start_server, stop_server


@pytest.fixture()
def registry(tmp_path: Path) -> Iterator[Server]:
    srv = start_server(tmp_path / "registry")
    try:
        yield srv
    finally:
        stop_server(srv)


def test_push_then_pull_through_a_registry(pulled: Server, registry: Server, tmp_path: Path) -> None:
    remote = f"{registry.host}/team/coder:v1"
    source = ollama.Client(host=pulled.url)
    source.copy(MODEL, remote)
    try:
        events = list(source.push(remote, insecure=True, stream=True))
        assert events[-1].status == "success"
        assert any(e.status == "starting upload" for e in events)
        again = list(source.push(remote, insecure=True, stream=True))
        assert all(e.status != "starting upload" for e in again)  # every layer already there
    finally:
        source.delete(remote)

    hosted = ollama.Client(host=registry.url)
    assert remote in [m.model for m in hosted.list().models]

    fresh = start_server(tmp_path / "fresh")
    try:
        client = ollama.Client(host=fresh.url)
        done = list(client.pull(remote, insecure=True, stream=True))
        assert done[-1].status == "success"
        pulled_id = next(m.digest for m in client.list().models if m.model == remote)
        hosted_id = next(m.digest for m in hosted.list().models if m.model == remote)
        assert pulled_id == hosted_id  # the manifest's exact bytes travelled
        assert client.generate(model=remote, prompt="Say hi.", options=greedy(4)).response
    finally:
        stop_server(fresh)


def test_registry_errors(pulled: Server, registry: Server) -> None:
    client = ollama.Client(host=pulled.url)
    with pytest.raises(ollama.ResponseError) as err:
        list(client.pull(f"{registry.host}/team/missing:v1", insecure=True, stream=True))
    assert "not found" in str(err.value)
    with pytest.raises(ollama.ResponseError) as err:
        client.push(f"{registry.host}/team/never-made:v1", insecure=True)
    assert err.value.status_code == 404
    with registry.client() as c:
        r = c.put("/v2/team/x/blobs/uploads/nonexistent?digest=sha256:" + "0" * 64)
        assert r.status_code == 404
        start = c.post("/v2/team/x/blobs/uploads/")
        loc = start.headers["location"]
        c.patch(loc, content=b"some bytes")
        bad = c.put(loc + "?digest=sha256:" + "1" * 64)
        assert bad.status_code == 400 and bad.json()["errors"][0]["code"] == "DIGEST_INVALID"
        assert not (registry.home / "blobs" / ("sha256-" + "1" * 64)).exists()
