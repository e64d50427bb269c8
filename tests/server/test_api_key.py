"""ROOST_API_KEY: every route but the status line and version needs it, in every dialect.

Real servers on loopback and the real clients (openai, ollama, the roost CLI). The
non-loopback checks use the app in process: no test listens on a public address.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx2 as httpx
import ollama
import openai
import pytest
from starlette.testclient import TestClient

from tests.conftest import Server, free_port, start_server, stop_server

KEY = "rk-test-0123456789abcdef"


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = start_server(Path(tmp_path_factory.mktemp("keyed")), {"ROOST_API_KEY": KEY})
    try:
        yield srv
    finally:
        stop_server(srv)


def test_routes_need_the_key(keyed: Server) -> None:
    with httpx.Client(base_url=keyed.url, timeout=30) as c:
        assert c.get("/").status_code == 200
        assert c.get("/api/version").status_code == 200
        assert c.head("/api/version").status_code == 200
        for method, path, shape in (("GET", "/api/tags", "ollama"), ("POST", "/api/show", "ollama"),
                                    ("GET", "/v1/models", "openai"), ("GET", "/v2/", "registry"),
                                    ("POST", "/api/generate", "ollama")):
            for auth in (None, "Bearer wrong", f"Basic {KEY}", f"Bearer {KEY}x"):
                headers = {"Authorization": auth} if auth else {}
                r = c.request(method, path, json={"model": "x"}, headers=headers)
                assert r.status_code == 401, (method, path, auth)
                body = r.json()
                if shape == "openai":
                    assert body["error"]["code"] == "invalid_api_key"
                elif shape == "registry":
                    assert body["errors"][0]["code"] == "UNAUTHORIZED"
                else:
                    assert "API key" in body["error"]
        r = c.get("/api/tags", headers={"Authorization": f"Bearer {KEY}"})
        assert r.status_code == 200 and r.json() == {"models": []}
        # A browser's preflight carries no key: CORS answers it.
        r = c.options("/api/tags", headers={"Origin": "http://localhost:3000",
                                            "Access-Control-Request-Method": "GET",
                                            "Access-Control-Request-Headers": "authorization"})
        assert r.status_code == 200


def test_real_clients_send_the_key(keyed: Server) -> None:
    assert openai.OpenAI(base_url=f"{keyed.url}/v1", api_key=KEY).models.list().data == []
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=f"{keyed.url}/v1", api_key="wrong", max_retries=0).models.list()
    client = ollama.Client(host=keyed.url, headers={"Authorization": f"Bearer {KEY}"})
    assert client.list().models == []
    with pytest.raises(ollama.ResponseError) as err:
        ollama.Client(host=keyed.url).list()
    assert err.value.status_code == 401


def _roost(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "roost", *args], env=env, capture_output=True,
                          text=True, timeout=60)


def test_cli_sends_the_key_from_its_environment(keyed: Server) -> None:
    r = _roost(keyed.env(ROOST_API_KEY=KEY), "list")
    assert r.returncode == 0 and r.stdout.split() == ["NAME", "ID", "SIZE", "MODIFIED"], r.stderr
    r = _roost(keyed.env(ROOST_API_KEY="wrong"), "list")
    assert r.returncode == 1 and r.stderr.startswith("Error: ") and r.stderr.count("\n") == 1
    assert "Traceback" not in r.stderr


def test_key_file_under_roost_home(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    key_file = home / "api_key"
    key_file.write_text(KEY + "\n")
    key_file.chmod(0o600)
    env = {k: v for k, v in os.environ.items() if k != "ROOST_API_KEY"}
    srv = start_server(home, {})
    try:
        assert httpx.get(f"{srv.url}/api/tags").status_code == 401
        r = _roost({**env, "ROOST_HOST": srv.host, "ROOST_HOME": str(home)}, "list")
        assert r.returncode == 0, r.stderr  # the CLI reads the same file
    finally:
        stop_server(srv)


def test_non_loopback_bind_without_a_key_is_refused(tmp_path: Path) -> None:
    env = {**os.environ, "ROOST_HOME": str(tmp_path), "ROOST_HOST": f"0.0.0.0:{free_port()}"}
    env.pop("ROOST_API_KEY", None)
    r = subprocess.run([sys.executable, "-m", "roost", "serve"], env=env, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 1
    lines = (r.stdout + r.stderr).strip().splitlines()
    assert len(lines) == 1 and "ROOST_API_KEY" in lines[0] and "ROOST_ALLOW_UNAUTHENTICATED" in lines[0]


def test_opted_out_public_bind_keeps_registry_writes_closed(tmp_path: Path) -> None:
    from roost.server.app import create_app

    app = create_app(home=tmp_path, bind_host="0.0.0.0")
    with TestClient(app, base_url="http://192.0.2.10:11434") as c:
        assert c.get("/api/tags").status_code == 200  # open, as the user chose
        for method, path in (("POST", "/v2/library/m/blobs/uploads/"),
                             ("PUT", "/v2/library/m/manifests/latest"),
                             ("PATCH", "/v2/library/m/blobs/uploads/abc")):
            r = c.request(method, path, content=b"{}")
            assert r.status_code == 403 and r.json()["errors"][0]["code"] == "DENIED"
        assert c.get("/v2/").status_code == 200  # reading stays open


def test_allowed_hosts_setting_admits_listed_lan_names(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from roost.server.app import create_app

    monkeypatch.setenv("ROOST_ALLOWED_HOSTS", "printer.local, .corp.internal")
    app = create_app(home=tmp_path, bind_host="127.0.0.1")
    with TestClient(app) as c:
        for host, status in (("printer.local", 200), ("a.corp.internal", 200),
                             ("other.local", 403), ("db.internal", 403), ("localhost", 200)):
            assert c.get("/api/tags", headers={"Host": host}).status_code == status, host
