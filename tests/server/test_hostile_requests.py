"""Requests an outsider can send to a running server: none may read, hurt or hold it.

All on the session's real server: path traversal on every registry route, oversized and
deeply nested bodies, out-of-range options in both dialects, CORS preflights and Host names.
"""

from __future__ import annotations

import http.client
import json
import socket
import subprocess
import time

import pytest

from tests.conftest import MODEL, Server

SECRET = "secret-token-that-must-not-leak"


def raw(server: Server, method: str, path: str, body: bytes = b"",
        headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    """A request sent as written: http.client does not normalise `..` in the path."""
    host, port = server.host.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


@pytest.fixture(scope="module")
def secret_file(pulled: Server) -> Server:
    (pulled.home / "config.toml").write_text(f'token = "{SECRET}"\n')
    return pulled


TRAVERSALS = [
    ("%2e%2e", "%2e%2e"), ("..", ".."), ("%2E%2E", "x"), ("library", "%2e%2e"), ("..%2f..", "x"),
]
ROUTES = [
    ("GET", "/v2/{ns}/{model}/manifests/config.toml"),
    ("HEAD", "/v2/{ns}/{model}/manifests/config.toml"),
    ("GET", "/v2/{ns}/{model}/manifests/..%2f..%2fconfig.toml"),
    ("GET", "/v2/{ns}/{model}/blobs/sha256-" + "0" * 64),
    ("HEAD", "/v2/{ns}/{model}/blobs/sha256-" + "0" * 64),
    ("POST", "/v2/{ns}/{model}/blobs/uploads/"),
    ("PATCH", "/v2/{ns}/{model}/blobs/uploads/abc"),
    ("PUT", "/v2/{ns}/{model}/blobs/uploads/abc?digest=sha256:" + "0" * 64),
    ("PUT", "/v2/{ns}/{model}/manifests/config.toml"),
    ("GET", "/v2/library/qwen2.5-coder/manifests/{ns}"),
    ("GET", "/v2/{ns}/{model}/manifests/*"),
]


@pytest.mark.parametrize("method,route", ROUTES)
def test_registry_routes_refuse_traversal(secret_file: Server, method: str, route: str) -> None:
    for ns, model in TRAVERSALS:
        status, body = raw(secret_file, method, route.format(ns=ns, model=model), b"{}")
        assert status >= 400, (method, route, ns, model, status)
        assert SECRET.encode() not in body
    assert (secret_file.home / "config.toml").read_text().count(SECRET) == 1


def test_registry_still_serves_a_real_manifest(pulled: Server) -> None:
    status, body = raw(pulled, "GET", "/v2/library/qwen2.5-coder/manifests/0.5b")
    assert status == 200 and json.loads(body)["layers"]


def test_body_over_the_limit_is_413_before_it_is_read(pulled: Server) -> None:
    host, port = pulled.host.rsplit(":", 1)
    started = time.monotonic()
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(b"POST /api/chat HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                  b"Content-Length: 104857600\r\n\r\n" + b"[" * 1000)
        reply = b""
        while chunk := s.recv(4096):  # the server answers, then closes
            reply += chunk
    assert reply.decode().startswith("HTTP/1.1 413"), reply
    assert b'"error"' in reply and time.monotonic() - started < 1


def test_chunked_body_over_the_limit_is_413(pulled: Server) -> None:
    def chunks():  # 40 MiB without a Content-Length
        for _ in range(40):
            yield b" " * (1 << 20)

    with pulled.client() as c:
        r = c.post("/v1/chat/completions", content=chunks(), headers={"content-type": "application/json"})
        anthropic = c.post("/v1/messages", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413 and "larger than" in r.json()["error"]["message"]
    # each dialect's own shape, though no route ran
    assert anthropic.status_code == 413
    assert anthropic.json()["type"] == "error"
    assert anthropic.json()["error"]["type"] == "request_too_large"


def test_deeply_nested_json_is_400_fast(pulled: Server) -> None:
    nested = "[" * 5000 + "]" * 5000
    deep = json.dumps({"model": MODEL, "prompt": "hi"})[:-1] + f', "options": {{"stop": {nested}}}}}'
    with pulled.client() as c:
        started = time.monotonic()
        r = c.post("/api/generate", content=deep)
        assert r.status_code == 400 and "nested" in r.json()["error"]
        assert time.monotonic() - started < 0.5
        r = c.post("/v1/chat/completions", content='{"x":' + "[" * 100 + "]" * 100 + "}")
        assert r.status_code == 400 and "nested" in r.json()["error"]["message"]


@pytest.mark.parametrize("content_type", [None, "application/x-www-form-urlencoded", "text/plain"])
def test_json_without_json_content_type(pulled: Server, content_type: str | None) -> None:
    headers = {"content-type": content_type} if content_type else {}
    status, body = raw(pulled, "POST", "/api/show", json.dumps({"model": MODEL}).encode(), headers)
    assert status == 200, body
    assert json.loads(body)["details"]["family"]


def runner_pids(server: Server) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(server.proc.pid), "-f", "runner_main"],
                         capture_output=True, text=True)
    return sorted(int(p) for p in out.stdout.split())


BAD_OPTIONS = [
    ({"num_ctx": 2147483648}, "num_ctx"), ({"num_ctx": 0}, "num_ctx"),
    ({"num_predict": -5}, "num_predict"), ({"num_keep": -9}, "num_keep"),
    ({"top_k": -7}, "top_k"), ({"top_p": 1.5}, "top_p"), ({"min_p": -0.1}, "min_p"),
    ({"temperature": float("nan")}, "temperature"), ({"temperature": float("inf")}, "temperature"),
    ({"repeat_last_n": -3}, "repeat_last_n"), ({"seed": 2**80}, "seed"),
    ({"stop": [f"s{i}" for i in range(5000)]}, "stop"), ({"stop": ["x" * 5000]}, "stop"),
    ({"top_k": 1.5}, "top_k"), ({"use_mmap": "yes"}, "use_mmap"), ({"num_gpu": -2}, "num_gpu"),
]


def test_bad_options_refused_before_any_runner(pulled: Server) -> None:
    with pulled.client() as c:
        c.post("/api/generate", json={"model": MODEL, "keep_alive": "5m"})  # loaded
        before = (runner_pids(pulled), c.get("/api/ps").json())
        for options, field in BAD_OPTIONS:
            body = json.dumps({"model": MODEL, "prompt": "hi", "options": options})
            started = time.monotonic()
            r = c.post("/api/generate", content=body)
            assert r.status_code == 400 and field in r.json()["error"], (options, r.text)
            assert time.monotonic() - started < 0.1, options
            oa = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], **options}
            r = c.post("/v1/chat/completions", content=json.dumps(oa))
            assert r.status_code == 400 and field in r.json()["error"]["message"], (options, r.text)
        for extra, field in (({"top_logprobs": 21, "logprobs": True}, "top_logprobs"),
                             ({"max_tokens": -1}, "max_tokens"), ({"n": 3}, "n")):
            oa = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], **extra}
            r = c.post("/v1/chat/completions", json=oa)
            assert r.status_code == 400 and field in r.json()["error"]["message"], r.text
        r = c.post("/api/chat", json={"model": MODEL, "messages": [], "keep_alive": "forever"})
        assert r.status_code == 400 and "keep_alive" in r.json()["error"]
        assert (runner_pids(pulled), c.get("/api/ps").json()) == before


def test_cors_preflight_of_the_openai_browser_sdk(pulled: Server) -> None:
    headers = {"Origin": "http://localhost:5173", "Access-Control-Request-Method": "POST",
               "Access-Control-Request-Headers":
                   "authorization,content-type,x-stainless-arch,x-stainless-lang,"
                   "x-stainless-os,x-stainless-package-version,x-stainless-retry-count,"
                   "x-stainless-runtime,x-stainless-runtime-version,x-stainless-timeout"}
    with pulled.client() as c:
        r = c.options("/v1/chat/completions", headers=headers)
        assert r.status_code == 200, r.text
        assert r.headers["access-control-allow-origin"] == "http://localhost:5173"
        allowed = r.headers["access-control-allow-headers"].lower()
        assert "x-stainless-arch" in allowed and "x-stainless-timeout" in allowed
        r = c.options("/v1/chat/completions", headers={**headers, "Origin": "https://evil.example"})
        assert r.status_code == 400


@pytest.mark.parametrize("host,ok", [
    ("localhost", True), ("localhost:11434", True), ("app.localhost", True), ("127.0.0.1", True),
    ("[::1]:11434", True), ("10.1.2.3", True), (socket.gethostname(), True),
    ("evil.example", False), ("printer.local", False), ("db.internal", False),
    ("127.0.0.1.evil.example", False),
])
def test_host_header_on_a_loopback_bind(pulled: Server, host: str, ok: bool) -> None:
    status, _ = raw(pulled, "GET", "/api/tags", headers={"Host": host})
    assert status == (200 if ok else 403)


def test_a_web_page_cannot_change_anything(pulled: Server) -> None:
    """A cross-site `text/plain` POST needs no preflight: CORS alone would let it run."""
    evil = {"Origin": "https://evil.example", "Content-Type": "text/plain"}
    body = b'{"name": "latest", "url": "https://evil.example"}'
    status, answer = raw(pulled, "POST", "/v1/engines", body, evil)
    assert status == 403 and b"not allowed" in answer
    status, _ = raw(pulled, "POST", "/api/pull", b'{"model": "x"}', evil)
    assert status == 403
    with pulled.client() as c:
        assert "latest" not in c.get("/v1/engines").text
    status, _ = raw(pulled, "POST", "/api/show", json.dumps({"model": MODEL}).encode(),
                    {"Origin": "http://localhost:5173", "Content-Type": "text/plain"})
    assert status == 200  # a page served from this machine may
    status, _ = raw(pulled, "GET", "/api/tags", headers={"Origin": "https://evil.example"})
    assert status == 200  # reading is CORS's business: the browser hides the answer


def test_the_chat_page_may_post_to_its_own_origin(pulled: Server) -> None:
    """The page opened at this machine's own name (which the Host guard allows on a loopback
    bind) posts with that origin; a rebound name never gets past the Host guard."""
    own = f"{socket.gethostname().lower()}:{pulled.host.rsplit(':', 1)[1]}"
    body = json.dumps({"model": MODEL}).encode()
    status, _ = raw(pulled, "POST", "/api/show", body,
                    {"Host": own, "Origin": f"http://{own}", "Content-Type": "application/json"})
    assert status == 200
    status, _ = raw(pulled, "POST", "/api/show", body,
                    {"Host": own, "Origin": "http://other.example", "Content-Type": "application/json"})
    assert status == 403
    status, _ = raw(pulled, "POST", "/api/show", body, {
        "Host": "evil.example:1", "Origin": "http://evil.example:1", "Content-Type": "application/json"})
    assert status == 403


def test_unclosed_strings_are_scanned_in_linear_time(pulled: Server) -> None:
    started = time.monotonic()
    status, _ = raw(pulled, "POST", "/api/chat", b'\\"' * 1_000_000,
                    {"Content-Type": "application/json"})
    assert status == 400 and time.monotonic() - started < 3


def test_registry_manifest_put_refuses_junk(pulled: Server) -> None:
    for body in (b"[]", b"[" * 100_000, b"{}"):
        status, answer = raw(pulled, "PUT", "/v2/team/junk/manifests/latest", body)
        assert status == 400, (body[:10], answer)
