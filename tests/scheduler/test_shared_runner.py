"""Names that share weights share one runner, and each name unloads on its own."""

from __future__ import annotations

from tests.conftest import MODEL, Server, greedy
from tests.support.runner_procs import runner_pids


def loaded_names(server: Server) -> set[str]:
    with server.client() as c:
        return {m["name"] for m in c.get("/api/ps").json()["models"]}


def test_a_copy_and_a_variant_share_the_runner_and_unload_alone(pulled: Server) -> None:
    with pulled.client() as c:
        assert c.post("/api/copy", json={"source": MODEL, "destination": "shared-copy:1"}).status_code == 200
        r = c.post("/api/create", json={"model": "shared-variant:1", "from": MODEL,
                                        "system": "You answer in French.", "stream": False})
        assert r.status_code == 200, r.text
        try:
            for name in (MODEL, "shared-copy:1", "shared-variant:1"):
                r = c.post("/api/generate", json={"model": name, "prompt": "Say hi.", "stream": False,
                                                  "keep_alive": "5m", "options": greedy(4)})
                assert r.status_code == 200, r.text
            pids = runner_pids(pulled)
            assert len(pids) == 1
            assert {MODEL, "shared-copy:1", "shared-variant:1"} <= loaded_names(pulled)
            # Deleting the copy (same manifest as the original) unloads only the copy.
            c.post("/api/generate", json={"model": "shared-copy:1", "keep_alive": 0})
            assert c.request("DELETE", "/api/delete", json={"model": "shared-copy:1"}).status_code == 200
            names = loaded_names(pulled)
            assert "shared-copy:1" not in names and MODEL in names and "shared-variant:1" in names
            assert runner_pids(pulled) == pids
            c.post("/api/generate", json={"model": "shared-variant:1", "keep_alive": 0})
            assert MODEL in loaded_names(pulled) and runner_pids(pulled) == pids
            r = c.post("/api/generate", json={"model": MODEL, "prompt": "Say hi.", "stream": False,
                                              "options": greedy(4)})
            assert r.status_code == 200 and runner_pids(pulled) == pids
            c.post("/api/generate", json={"model": MODEL, "keep_alive": 0})
            # The server is shared with other modules' tests: only this runner must be gone.
            assert pids[0] not in runner_pids(pulled)
            assert not {MODEL, "shared-copy:1", "shared-variant:1"} & loaded_names(pulled)
        finally:
            c.request("DELETE", "/api/delete", json={"model": "shared-copy:1"})
            c.request("DELETE", "/api/delete", json={"model": "shared-variant:1"})


def test_a_bigger_context_waits_for_the_runner_and_reloads(pulled: Server) -> None:
    """Asked while another request runs, a larger num_ctx is not quietly served in the smaller."""
    import threading

    with pulled.client() as c:
        c.post("/api/generate", json={"model": MODEL, "keep_alive": 0})
        c.post("/api/generate", json={"model": MODEL, "keep_alive": "5m"})
        small = {m["name"]: m["context_length"] for m in c.get("/api/ps").json()["models"]}[MODEL]
        busy = threading.Thread(target=lambda: pulled.client().post("/api/generate", json={
            "model": MODEL, "prompt": "Count to twenty.", "stream": False, "options": greedy(40)}))
        busy.start()
        r = c.post("/api/generate", json={"model": MODEL, "prompt": "Say hi.", "stream": False,
                                          "options": {**greedy(4), "num_ctx": small * 2}})
        busy.join(120)
        assert r.status_code == 200, r.text
        ctx = {m["name"]: m["context_length"] for m in c.get("/api/ps").json()["models"]}[MODEL]
        assert ctx == small * 2
        c.post("/api/generate", json={"model": MODEL, "keep_alive": 0})
