"""kill -9 of the server at random moments of a pull: nothing under a final name is partial,
no manifest names a missing blob, and the next pull completes and the model answers.

Both kinds of pull take turns on one ROOST_HOME: the catalog pull from the installed part
packages, and a registry pull from a second real Roost server (the session's `pulled`) on
127.0.0.1. Each kill falls at a position drawn with a fixed seed, stratified so that the ten
kills of a kind cover the whole pull: the weights from 0 to 100 % written, and the tail after
them (small layers, the manifest), plus a random fraction of a progress interval.
"""

from __future__ import annotations

import random
import time
from pathlib import Path

from tests.conftest import MODEL, Server, greedy, start_server, stop_server
from tests.support.store_faults import (
    StoreInspector,
    delete_all_models,
    kill_during_pull,
    kill_hard,
)

KILLS = 20
SEED = 1977
TAIL = 1.1  # positions past 1.0 fall after the weights: on the small layers and the manifest


def positions(rng: random.Random, n: int) -> list[float]:
    """n positions in [0, TAIL), one per stratum, in random order."""
    found = [(k + rng.random()) * TAIL / n for k in range(n)]
    rng.shuffle(found)
    return found


def test_kill_9_during_pulls_loses_nothing(pulled: Server, tmp_path: Path) -> None:
    home = tmp_path / "home"
    inspector = StoreInspector(home)
    rng = random.Random(SEED)
    names = {"catalog": MODEL, "registry": f"{pulled.host}/library/{MODEL}"}
    at = {kind: positions(rng, KILLS // 2) for kind in names}
    started = time.monotonic()
    for i in range(KILLS):
        kind = "catalog" if i % 2 == 0 else "registry"
        position = at[kind][i // 2]
        server = start_server(home)
        try:
            delete_all_models(server)
            jitter = rng.uniform(0, 0.3 if position >= 1 else 0.1)
            killed = kill_during_pull(server, names[kind], position, jitter)
        finally:
            kill_hard(server)
        state = inspector.check()
        print(f"kill {i + 1:2d} {kind:8s} at {position:.2f} after {killed.delay:.2f}s "
              f"({killed.stage}, {killed.events} events): "
              f"{len(state.blobs)} blobs, {len(state.temporaries)} temporaries, "
              f"{len(state.manifests)} manifests, problems {state.problems or 'none'}")
        assert not state.problems, (i, kind, killed, state)
    print(f"{KILLS} kills in {time.monotonic() - started:.1f}s")
    _next_pulls_complete(home, inspector, names)


def _next_pulls_complete(home: Path, inspector: StoreInspector, names: dict[str, str]) -> None:
    server = start_server(home)
    try:
        with server.client() as c:
            for name in names.values():
                r = c.post("/api/pull", json={"model": name, "stream": False, "insecure": True})
                assert r.status_code == 200 and r.json() == {"status": "success"}, r.text
            r = c.post("/api/generate", json={"model": MODEL, "prompt": "Say hi.", "stream": False,
                                              "options": greedy(4)})
            assert r.status_code == 200 and r.json()["response"], r.text
    finally:
        stop_server(server)
    state = inspector.check()
    assert not state.problems and len(state.manifests) == 2, state
    assert not state.temporaries, state  # the leftovers of the killed writers were swept
