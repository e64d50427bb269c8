"""Cortex's model routes (model in the body) and `roost models ...`, on the real server and model."""

from __future__ import annotations

from tests.conftest import MODEL, Server
from tests.conftest import roost_cli as roost


def loaded(server: Server) -> list[str]:
    with server.client() as c:
        return [m["name"] for m in c.get("/api/ps").json()["models"]]


def test_pull_start_stop_delete_in_cortex_shape(pulled: Server) -> None:
    with pulled.client() as c:
        r = c.post("/v1/models/pull", json={"model": MODEL})
        assert r.status_code == 200 and MODEL in r.json()["message"]
        r = c.post("/v1/models/pull", json={"model": "no-such-thing:1b"})
        assert r.status_code == 404 and set(r.json()) == {"message"}
        assert c.post("/v1/models/start", json={"model": MODEL, "ctx_len": 2048}).status_code == 200
        assert MODEL in loaded(pulled)
        assert c.get(f"/v1/models/status/{MODEL}").json() == {"message": "Model is running"}
        assert c.post("/v1/models/stop", json={"model": MODEL}).status_code == 200
        assert MODEL not in loaded(pulled)
        r = c.get(f"/v1/models/status/{MODEL}")
        assert r.status_code == 400 and "not loaded" in r.json()["message"]
        r = c.get("/v1/models/status/missing:1")
        assert r.status_code == 404 and set(r.json()) == {"message"}
        r = c.post("/v1/models/stop", json={"model": MODEL})
        assert r.status_code == 400 and "not loaded" in r.json()["message"]
        r = c.post("/v1/models/start", json={"model": "missing:1"})
        assert r.status_code == 404 and set(r.json()) == {"message"}
        r = c.post("/v1/models/start", json={})
        assert r.status_code == 400 and set(r.json()) == {"message"}
        assert c.post("/api/copy", json={"source": MODEL, "destination": "doomed:1"}).status_code == 200
        r = c.delete("/v1/models/doomed:1")
        assert r.json() == {"id": "doomed:1", "object": "model", "deleted": True}
        assert c.delete("/v1/models/doomed:1").status_code == 404


def test_cortex_spellings_of_the_cli(pulled: Server) -> None:
    assert MODEL in roost(pulled, "models", "list").stdout
    assert '"capabilities"' in roost(pulled, "models", "get", MODEL).stdout
    assert roost(pulled, "models", "pull", MODEL).returncode == 0
    assert roost(pulled, "models", "start", MODEL).stdout.strip() == f"started '{MODEL}'"
    assert MODEL in loaded(pulled)
    assert roost(pulled, "models", "stop", MODEL).returncode == 0
    assert MODEL not in loaded(pulled)
    assert roost(pulled, "cp", MODEL, "doomed:2").returncode == 0
    assert roost(pulled, "models", "delete", "doomed:2").stdout.strip() == "deleted 'doomed:2'"
