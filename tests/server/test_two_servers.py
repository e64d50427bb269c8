"""A second `roost serve` on a port already served says so in one line and exits 1; the first
server goes on as if nothing happened: same process, same runner, its model still loaded.

The second server is started as a user would start it by mistake: the same ROOST_HOST and
the same ROOST_HOME.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import (
    MODEL,
    Server,
    one_line_error,
    own_pulled_server,
    roost_cli,
)
from tests.support.signals_and_hangups import load_model, runner_pids


@pytest.fixture(scope="module")
def first(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with own_pulled_server(Path(tmp_path_factory.mktemp("first-server"))) as srv:
        yield srv


def test_a_second_server_on_the_port_exits_1_and_leaves_the_first_alone(first: Server) -> None:
    runner = load_model(first)

    started = time.monotonic()
    second = roost_cli(first, "serve")
    print(f"\nthe second server exited {second.returncode} after {time.monotonic() - started:.2f} s:"
          f" {second.stderr.strip()}")

    one_line_error(second, "port", "in use", first.host.rsplit(":", 1)[1])
    assert second.stdout == ""
    assert first.proc.poll() is None  # the same process, still running
    assert runner_pids(first.home) == [runner]
    with first.client() as c:
        assert c.get("/api/version").status_code == 200
        assert [m["name"] for m in c.get("/api/ps").json()["models"]] == [MODEL]
        r = c.post("/api/generate", json={"model": MODEL, "prompt": "Say hi.", "stream": False,
                                          "options": {"temperature": 0, "num_predict": 4}})
        assert r.status_code == 200 and r.json()["load_duration"] < 1e9, r.text  # no reload
    assert runner_pids(first.home) == [runner]
