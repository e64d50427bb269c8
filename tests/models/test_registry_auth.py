"""Pulling from an Ollama-protocol registry: its token challenge, blobs redirected to storage on
another host, names on the default host, and what a registry serves being checked.

The registry is tests/support/registry_server.py on 127.0.0.1 (its blob storage reached as
`localhost`, another host); the client is the real `roost pull` against a real Roost server.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Server, one_line_error, roost_cli, start_server, stop_server
from tests.support.registry_server import RegistryServer, digest_of, gguf_weights


def weights(seed: int) -> bytes:
    """Each test its own blob: the session server's store keeps what an earlier test pulled."""
    return gguf_weights(256 << 10, seed=seed)


def pulled_ok(r: subprocess.CompletedProcess[str]) -> None:
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert r.stderr.strip().splitlines()[-1] == "success", r.stderr


def error_line(r: subprocess.CompletedProcess[str], *words: str) -> str:
    """Exit 1, the last stderr line an `Error: ...` naming `words`, no traceback."""
    assert r.returncode == 1, (r.stdout, r.stderr)
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("Error: ") and "Traceback" not in r.stderr, r.stderr
    assert all(w in last for w in words), last
    return last


def models(server: Server) -> list[str]:
    with server.client() as c:
        return [m["name"] for m in c.get("/api/tags").json()["models"]]


def test_a_token_challenge_is_answered_and_the_token_used(server: Server) -> None:
    with RegistryServer(token="s3cret") as reg:
        reg.add_model("team", "tok", "v1", weights(1))
        pulled_ok(roost_cli(server, "pull", "--insecure", f"{reg.host}/team/tok:v1"))
    assert reg.tokens_issued == 1  # one token for the whole pull
    first = reg.requests[0]
    assert "/manifests/v1" in first.path and "Authorization" not in first.headers
    asked = next(r for r in reg.requests if r.path.startswith("/token"))
    assert "service=test-registry" in asked.path and "scope=repository%3Ateam%2Ftok%3Apull" in asked.path
    assert "Authorization" not in asked.headers  # nothing to prove: no key of ours goes out
    later = [r for r in reg.requests if r.path.startswith("/v2/")][1:]
    assert later and all(r.headers.get("Authorization") == "Bearer s3cret" for r in later)
    assert f"{reg.host}/team/tok:v1" in models(server)


def test_the_token_does_not_follow_a_redirect_to_storage(server: Server) -> None:
    """httpx drops Authorization on a cross-origin redirect: shown here, not trusted."""
    with RegistryServer(token="s3cret", storage=RegistryServer()) as reg:
        blob = weights(2)
        reg.add_model("team", "cdn", "v1", blob)
        pulled_ok(roost_cli(server, "pull", "--insecure", f"{reg.host}/team/cdn:v1"))
    assert reg.storage is not None
    blob_asks = [r for r in reg.requests if "/blobs/" in r.path]
    assert blob_asks and all(r.headers.get("Authorization") == "Bearer s3cret" for r in blob_asks)
    assert reg.storage.requests and reg.served == 0  # every byte came from storage
    for r in reg.storage.requests:
        assert r.headers.get("Host", "").startswith("localhost:")
        assert not any(k.lower() in ("authorization", "cookie") for k in r.headers), r.headers
    assert reg.storage.served - len(blob) in (0, len(b'{"model_format":"gguf"}'))  # config cached


def test_a_realm_on_another_host_is_refused(server: Server) -> None:
    with RegistryServer(token="s3cret") as reg:
        reg.realm_host = reg.alias  # the same machine under another name: still another host
        reg.add_model("team", "far", "v1", weights(3))
        r = roost_cli(server, "pull", "--insecure", f"{reg.host}/team/far:v1")
    one_line_error(r, "realm", reg.alias)
    assert reg.tokens_issued == 0 and not any(q.path.startswith("/token") for q in reg.requests)
    assert f"{reg.host}/team/far:v1" not in models(server)


def test_a_refused_token_is_an_error_line(server: Server) -> None:
    with RegistryServer(token="s3cret", issued_token="not-it") as reg:
        reg.add_model("team", "deny", "v1", weights(4))
        r = roost_cli(server, "pull", "--insecure", f"{reg.host}/team/deny:v1")
    one_line_error(r, "unauthorized")
    assert reg.tokens_issued == 1  # asked once, retried once, then gave up


def test_a_layer_that_is_not_gguf_fails_the_pull_and_keeps_nothing(server: Server) -> None:
    junk = b"this is not a GGUF file\n" * 4096
    with RegistryServer() as reg:
        reg.add_model("team", "junk", "v1", junk)
        r = roost_cli(server, "pull", "--insecure", f"{reg.host}/team/junk:v1")
    error_line(r, "invalid GGUF", digest_of(junk))
    assert f"{reg.host}/team/junk:v1" not in models(server)
    assert not (server.home / "blobs" / digest_of(junk).replace(":", "-")).exists()
    assert not (server.home / "manifests" / reg.host / "team" / "junk").exists()


@pytest.fixture()
def default_registry(tmp_path: Path) -> Iterator[tuple[RegistryServer, Server]]:
    """A registry standing in for registry.ollama.ai, and a server pointed at it."""
    with RegistryServer(token="s3cret") as reg:
        srv = start_server(tmp_path / "home", {"ROOST_REGISTRY": f"http://{reg.host}"})
        try:
            yield reg, srv
        finally:
            stop_server(srv)


def test_default_host_names_go_to_roost_registry(default_registry: tuple[RegistryServer, Server]
                                                 ) -> None:
    reg, srv = default_registry
    reg.add_model("library", "tiny", "1b", weights(5))
    reg.add_model("team", "tiny", "v2", weights(5))
    for name in ("tiny:1b", "team/tiny:v2", "registry.ollama.ai/library/tiny:1b"):
        pulled_ok(roost_cli(srv, "pull", name))
    assert sorted(models(srv)) == ["team/tiny:v2", "tiny:1b"]
    stored = srv.home / "manifests" / "registry.ollama.ai"
    assert (stored / "library" / "tiny" / "1b").read_bytes() == reg.manifests[("library", "tiny", "1b")]
    asked = {r.path for r in reg.requests if "/manifests/" in r.path}
    assert asked == {"/v2/library/tiny/manifests/1b", "/v2/team/tiny/manifests/v2"}
    missing = roost_cli(srv, "pull", "nope:1b")  # the registry's 404, with the catalog's words
    one_line_error(missing, "not found", "nope:1b")
