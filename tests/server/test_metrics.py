"""GET /metrics: scraped and parsed as Prometheus does, around a real generation on the real
model, a real runner crash, and behind the API key."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import MODEL, Server, greedy, start_server, stop_server
from tests.support.metrics import scrape, value


def test_a_generation_moves_the_counters(pulled: Server) -> None:
    with pulled.client() as c:
        c.post("/api/generate", json={"model": MODEL, "keep_alive": "5m"})  # loaded
        before = scrape(c)
        with c.stream("POST", "/api/generate", json={"model": MODEL, "prompt": "Count to five.",
                                                      "options": greedy(8)}) as r:
            assert r.status_code == 200
            last = [json.loads(line) for line in r.iter_lines() if line][-1]
        after = scrape(c)

    route = {"route": "/api/generate", "status": "200"}
    assert value(after, "roost_http_requests_total", **route) \
        == value(before, "roost_http_requests_total", **route) + 1
    model = {"model": MODEL}
    for name, moved in (("roost_generated_tokens_total", last["eval_count"]),
                        ("roost_prompt_tokens_total", last["prompt_eval_count"]),
                        ("roost_time_to_first_token_seconds_count", 1),
                        ("roost_decode_tokens_per_second_count", 1)):
        assert value(after, name, **model) - value(before, name, **model) == moved, name
    assert last["eval_count"] > 0
    evaluated = value(after, "roost_prompt_eval_tokens_total", **model) - value(
        before, "roost_prompt_eval_tokens_total", **model)
    assert 0 < evaluated <= last["prompt_eval_count"]  # a cached prefix is not evaluated again
    assert value(after, "roost_model_memory_bytes", **model) > 400e6  # 491 MB of weights, and KV
    assert ("roost_queue_depth", frozenset()) in after
    # The scrape before this one counted itself under its template, never a raw path.
    routes = {dict(labels)["route"] for name, labels in after if name == "roost_http_requests_total"}
    assert "/metrics" in routes and all(r.startswith("/") or r == "unmatched" for r in routes)


def test_route_labels_stay_bounded(pulled: Server) -> None:
    with pulled.client() as c:
        for digest in ("sha256-" + "0" * 64, "sha256-" + "1" * 64):
            assert c.head(f"/api/blobs/{digest}").status_code == 404
        for junk in ("/no/such/path", "/another/one"):
            assert c.get(junk).status_code == 404
        after = scrape(c)
    routes = {dict(labels)["route"] for name, labels in after if name == "roost_http_requests_total"}
    assert "/api/blobs/{digest}" in routes and "unmatched" in routes
    assert not any("sha256" in r or "no/such" in r for r in routes)


def test_a_runner_that_dies_is_counted(pulled: Server) -> None:
    """A real crash: the runner is killed with SIGKILL while loaded."""
    with pulled.client() as c:
        c.post("/api/generate", json={"model": MODEL, "keep_alive": "5m"})
        before = value(scrape(c), "roost_runner_restarts_total")
        pids = subprocess.run(["pgrep", "-P", str(pulled.proc.pid), "-f", "runner_main"],
                              capture_output=True, text=True).stdout.split()
        assert pids
        for pid in pids:
            os.kill(int(pid), signal.SIGKILL)
        deadline = time.monotonic() + 10
        while value(scrape(c), "roost_runner_restarts_total") < before + len(pids):
            assert time.monotonic() < deadline, "the crash was not counted"
            time.sleep(0.1)
        # The next request loads a fresh runner.
        r = c.post("/api/generate", json={"model": MODEL, "prompt": "hi", "stream": False,
                                          "options": greedy(2)})
        assert r.status_code == 200, r.text


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = start_server(Path(tmp_path_factory.mktemp("metrics-keyed")), {"ROOST_API_KEY": "rk-m"})
    try:
        yield srv
    finally:
        stop_server(srv)


def test_metrics_need_the_api_key(keyed: Server) -> None:
    with keyed.client() as c:
        r = c.get("/metrics")
        assert r.status_code == 401 and "API key" in r.json()["error"]
        c.headers["Authorization"] = "Bearer rk-m"
        samples = scrape(c)
    assert value(samples, "roost_http_requests_total", route="/metrics", status="401") == 1
