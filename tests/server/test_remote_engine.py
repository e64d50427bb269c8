"""Remote engines: a second real Roost server on loopback is the OpenAI-compatible endpoint.

The front server (the session's, with no model of its own) routes `MODEL:ENGINE` there,
through the CLI, both dialects and threads; the engine's key goes only to it.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from tests.conftest import MODEL, Server, free_port, one_line_error, start_server, stop_server
from tests.conftest import roost_cli as roost

KEY = "sk-remote-0123456789abcdef"


@pytest.fixture(scope="module")
def backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = start_server(Path(tmp_path_factory.mktemp("backend")), {"ROOST_API_KEY": KEY})
    try:
        with srv.client() as c:
            r = c.post("/api/pull", json={"model": MODEL, "stream": False},
                       headers={"Authorization": f"Bearer {KEY}"})
            assert r.status_code == 200, r.text
        yield srv
    finally:
        stop_server(srv)


def test_remote_models_through_every_door(server: Server, backend: Server) -> None:
    url = f"{backend.url}/v1"
    r = roost(server, "engines", "add", "cluster", "--url", url, "--api-key", KEY)
    assert r.returncode == 0, r.stderr
    listed = roost(server, "engines", "list").stdout
    assert "llama-cpp" in listed and "cluster" in listed and KEY not in listed and "sk-…cdef" in listed
    remote = f"{MODEL}:cluster"
    r = roost(server, "run", "-o", "temperature=0", "-o", "num_predict=12", remote, "Say hello.")
    assert r.returncode == 0 and r.stdout.strip(), r.stderr
    with server.client() as c:
        lines = []
        with c.stream("POST", "/api/chat", json={"model": remote, "options": {"num_predict": 8},
                                                 "messages": [{"role": "user", "content": "Hi"}]}) as s:
            lines = [json.loads(x) for x in s.iter_lines() if x]
        assert lines[-1]["done"] is True and lines[-1]["eval_count"] > 0
        assert "".join(x["message"]["content"] for x in lines).strip()
        assert c.post("/api/show", json={"model": remote}).json()["capabilities"][0] == "completion"
    sdk = openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused")
    answer = sdk.chat.completions.create(model=remote, max_tokens=8,
                                         messages=[{"role": "user", "content": "Hi"}])
    assert answer.choices[0].message.content and answer.usage and answer.usage.completion_tokens > 0
    r = roost(server, "chat", remote, "-m", "Say yes.")
    assert r.returncode == 0 and "thread: " in r.stderr
    thread = r.stderr.split("thread: ")[1].split()[0]
    assert roost(server, "threads", "list").stdout.count(remote) >= 1
    assert "Say yes." in roost(server, "threads", "show", thread).stdout
    assert KEY not in server.log.read_text()
    mode = stat.S_IMODE(os.stat(server.home / "roost.db").st_mode)
    assert mode == 0o600


def test_remote_errors_are_one_line(server: Server, backend: Server) -> None:
    assert roost(server, "engines", "add", "wrongkey", "--url", f"{backend.url}/v1",
                 "--api-key", "nope").returncode == 0
    one_line_error(roost(server, "run", f"{MODEL}:wrongkey", "hi"), "engine 'wrongkey'", "401")
    assert roost(server, "engines", "add", "cluster2", "--url", f"{backend.url}/v1").returncode == 0
    one_line_error(roost(server, "run", "no-such-model:cluster2", "hi"), "engine 'cluster2'")
    assert roost(server, "configs", "set", "cluster2_api_key", KEY).returncode == 0
    r = roost(server, "run", "-o", "num_predict=4", f"{MODEL}:cluster2", "hi")
    assert r.returncode == 0, r.stderr  # the key from configs reaches the engine
    one_line_error(roost(server, "run", "no-such-model:cluster2", "hi"), "404")
    assert roost(server, "engines", "add", "gone", "--url",
                 f"http://127.0.0.1:{free_port()}/v1").returncode == 0
    one_line_error(roost(server, "run", f"{MODEL}:gone", "hi"), "could not reach")
    listed = roost(server, "configs", "list").stdout
    assert "cluster2_api_key" in listed and KEY not in listed
    one_line_error(roost(server, "configs", "set", "colour", "blue"), "unknown config key")
    one_line_error(roost(server, "engines", "add", "Bad Name", "--url", "http://x"), "invalid engine name")
    assert roost(server, "engines", "rm", "gone").returncode == 0
    one_line_error(roost(server, "engines", "rm", "gone"), "not found")


def test_a_remote_model_is_known_to_the_model_and_engine_routes(server: Server, backend: Server) -> None:
    assert roost(server, "engines", "add", "cluster3", "--url", f"{backend.url}/v1",
                 "--api-key", KEY).returncode == 0
    remote = f"{MODEL}:cluster3"
    with server.client() as c:
        model = c.get(f"/v1/models/{remote}")
        status = c.get(f"/v1/models/status/{remote}")
        engine = c.get("/v1/engines/cluster3")
        local = c.get("/v1/engines/llama-cpp")
        missing = c.get("/v1/engines/nope")
        embed = c.post("/api/embed", json={"model": remote, "input": "hi"})
        vectors = c.post("/v1/embeddings", json={"model": remote, "input": "hi"})
    assert model.status_code == 200 and model.json()["owned_by"] == "cluster3"
    assert status.status_code == 200
    [entry] = engine.json()
    assert entry["type"] == "remote" and entry["api_key"] == "sk-…cdef" and KEY not in engine.text
    assert local.json()[0]["type"] == "local"
    assert missing.status_code == 404 and set(missing.json()) == {"message"}
    assert embed.status_code == 400 and "served by engine 'cluster3'" in embed.json()["error"]
    assert vectors.status_code == 400 and "chat only" in vectors.json()["error"]["message"]


def test_configs_persist_across_a_restart_and_stay_secret(tmp_path: Path) -> None:
    home = tmp_path / "home"
    srv = start_server(home)
    try:
        r = roost(srv, "configs", "set", "openai_api_key", KEY)
        assert r.returncode == 0 and KEY not in r.stdout + r.stderr
    finally:
        stop_server(srv)
    srv = start_server(home)
    try:
        assert roost(srv, "configs", "get", "openai_api_key").stdout.strip() == "sk-…cdef"
        with srv.client() as c:
            assert KEY not in c.get("/v1/configs").text
        assert stat.S_IMODE(os.stat(home / "roost.db").st_mode) == 0o600
        assert all(KEY not in p.read_text(errors="replace") for p in home.rglob("*.log"))
        one_line_error(roost(srv, "configs", "get", "github_token"), "not set")
    finally:
        stop_server(srv)


def test_an_engine_named_like_a_tag_does_not_take_local_models(pulled: Server) -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    assert roost(pulled, "cp", MODEL, "tagtest:latest").returncode == 0
    assert roost(pulled, "engines", "add", "latest", "--url", url).returncode == 0
    try:
        r = roost(pulled, "run", "-o", "num_predict=4", "tagtest:latest", "hi")  # stays local
        assert r.returncode == 0 and r.stdout.strip(), r.stderr
    finally:
        roost(pulled, "engines", "rm", "latest")
        roost(pulled, "rm", "tagtest:latest")
