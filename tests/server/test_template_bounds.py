"""A hostile template in a request fails that request (400); the server and other streams go on."""

from __future__ import annotations

import json
import threading
import time

import pytest

from tests.conftest import MODEL, Server, greedy

HOSTILE = [
    "{{ 'x' * 10**10 }}",
    "{{ [0] * 10**10 }}",
    "{{ 'x' | center(10**10) }}",
    "{% set ns = namespace(s='x') %}{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}"
    "{{ ns.s | length }}",
    "{% for i in range(100000) %}{% for j in range(100000) %}xxxxxxxxxx{% endfor %}{% endfor %}",
]


def _rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


def test_hostile_templates_fail_their_request_only(pulled: Server) -> None:
    pieces: list[str] = []
    errors: list[str] = []

    def stream() -> None:
        with pulled.client() as c, c.stream("POST", "/api/generate", json={
                "model": MODEL, "prompt": "Count from 1 to 60, one number per line.",
                "options": greedy(160)}) as r:
            for line in r.iter_lines():
                if line:
                    chunk = json.loads(line)
                    errors.extend([chunk["error"]] if "error" in chunk else [])
                    pieces.append(chunk.get("response", ""))

    with pulled.client() as c:
        c.post("/api/generate", json={"model": MODEL, "keep_alive": "5m"})
        other = threading.Thread(target=stream)
        other.start()
        while not pieces:
            time.sleep(0.05)
        rss = _rss_kib(pulled.proc.pid)
        for template in HOSTILE:
            started = time.monotonic()
            r = c.post("/api/generate", json={"model": MODEL, "prompt": "hi", "template": template,
                                              "stream": False})
            assert r.status_code == 400, (template, r.text)
            assert "chat template" in r.json()["error"]
            assert time.monotonic() - started < 8
        other.join(120)
        assert not errors and len(pieces) > 20
        assert pulled.proc.poll() is None
        assert _rss_kib(pulled.proc.pid) - rss < 200 * 1024  # the server itself did not balloon
        r = c.post("/api/generate", json={"model": MODEL, "prompt": "Say hi.", "stream": False,
                                          "options": greedy(4)})
        assert r.status_code == 200 and r.json()["response"]


@pytest.mark.parametrize("route", ["/api/create"])
def test_hostile_template_in_create_is_refused(pulled: Server, route: str) -> None:
    with pulled.client() as c:
        r = c.post(route, json={"model": "bad-template:1", "from": MODEL, "stream": False,
                                "template": "{{ 'x' * 10**10 }}"})
        assert r.status_code == 400 and "template" in r.json()["error"]
        assert c.post("/api/show", json={"model": "bad-template:1"}).status_code == 404
