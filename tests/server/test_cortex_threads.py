"""Cortex's thread and message routes on a real server with a real SQLite database."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from tests.conftest import Server, start_server, stop_server


def test_threads_and_messages_through_http(server: Server) -> None:
    with server.client() as c:
        assert c.get("/healthz").json() == {}
        t = c.post("/v1/threads", json={"metadata": {"title": "Trip plans"}}).json()
        assert t["object"] == "thread" and t["metadata"]["title"] == "Trip plans"
        assert c.get(f"/v1/threads/{t['id']}").json()["title"] == "Trip plans"
        r = c.patch(f"/v1/threads/{t['id']}", json={"metadata": {"title": "Renamed"}})
        assert r.json()["title"] == "Renamed"
        ids = []
        for role, text in (("user", "Where to?"), ("assistant", "Lisbon."), ("user", "When?")):
            m = c.post(f"/v1/threads/{t['id']}/messages", json={"role": role, "content": text}).json()
            assert m["object"] == "thread.message" and m["thread_id"] == t["id"]
            assert m["content"] == [{"type": "text", "text": {"value": text, "annotations": []}}]
            ids.append(m["id"])
        page = c.get(f"/v1/threads/{t['id']}/messages", params={"order": "asc", "limit": 2}).json()
        assert [m["id"] for m in page["data"]] == ids[:2] and page["has_more"]
        assert page["first_id"] == ids[0] and page["last_id"] == ids[1]
        rest = c.get(f"/v1/threads/{t['id']}/messages",
                     params={"order": "asc", "after": page["last_id"]}).json()
        assert [m["id"] for m in rest["data"]] == ids[2:] and not rest["has_more"]
        newest = c.get(f"/v1/threads/{t['id']}/messages").json()["data"][0]
        assert newest["id"] == ids[2]  # newest first by default
        r = c.patch(f"/v1/threads/{t['id']}/messages/{ids[1]}", json={"content": "Porto."})
        assert r.json()["content"][0]["text"]["value"] == "Porto."
        assert c.delete(f"/v1/threads/{t['id']}/messages/{ids[2]}").json()["deleted"] is True
        assert t["id"] in [x["id"] for x in c.get("/v1/threads").json()["data"]]
        assert c.delete(f"/v1/threads/{t['id']}").json() == {
            "id": t["id"], "object": "thread.deleted", "deleted": True}
        r = c.get(f"/v1/threads/{t['id']}")
        assert r.status_code == 404 and "not found" in r.json()["message"]


def test_cortex_errors_have_cortex_shape(server: Server) -> None:
    with server.client() as c:
        r = c.post("/v1/threads/nope/messages", json={"role": "user", "content": "x"})
        assert r.status_code == 404 and set(r.json()) == {"message"}
        t = c.post("/v1/threads", json={}).json()
        r = c.post(f"/v1/threads/{t['id']}/messages", json={"role": "wizard", "content": "x"})
        assert r.status_code == 400 and set(r.json()) == {"message"}
        r = c.get("/v1/threads", params={"limit": 0})
        assert r.status_code == 400 and set(r.json()) == {"message"}
        assert "error" in c.get("/v1/models/nope").json()  # OpenAI's routes keep OpenAI's shape


def test_threads_survive_a_restart(tmp_path: Path) -> None:
    home = tmp_path / "home"
    srv = start_server(home)
    try:
        with srv.client() as c:
            t = c.post("/v1/threads", json={"title": "kept"}).json()
            c.post(f"/v1/threads/{t['id']}/messages", json={"role": "user", "content": "remember"})
    finally:
        stop_server(srv)
    with sqlite3.connect(home / "roost.db") as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    srv = start_server(home)
    try:
        with srv.client() as c:
            data = c.get(f"/v1/threads/{t['id']}/messages").json()["data"]
            assert [m["content"][0]["text"]["value"] for m in data] == ["remember"]
    finally:
        stop_server(srv)


def test_openai_style_content_parts(server: Server) -> None:
    with server.client() as c:
        t = c.post("/v1/threads", json={}).json()
        for content in ([{"type": "text", "text": "hello"}],
                        [{"type": "text", "text": {"value": "hello", "annotations": []}}]):
            r = c.post(f"/v1/threads/{t['id']}/messages", json={"role": "user", "content": content})
            assert r.status_code == 200 and r.json()["content"][0]["text"]["value"] == "hello"
