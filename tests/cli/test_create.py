"""`roost create` against a real server: Modelfiles FROM a file, a folder and a model name,
import without copying (a hard link, or a recorded path checked at load), and the
`show --modelfile` round trip.

Files that need not load are small synthetic GGUFs (tests/support/gguf_files.tiny); the one
generation uses the real bundled model.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from roost.models.names import Name
from tests.conftest import MODEL, Server, one_line_error
from tests.support import gguf_files

TEMPLATE = "{% for m in messages %}<{{ m.role }}>{{ m.content }}\n{% endfor %}<assistant>"


@pytest.fixture(scope="module", autouse=True)
def _remove_created_models(pulled: Server) -> Iterator[None]:
    """The session server is shared: what this module creates (linked files that it later
    deletes among them) goes away with it."""
    yield
    with pulled.client() as c:
        for model in c.get("/api/tags").json()["models"]:
            if model["name"].startswith("create-"):
                c.request("DELETE", "/api/delete", json={"model": model["name"]})


def roost(server: Server, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "roost", *args], env=server.env(), cwd=cwd,
                          text=True, capture_output=True, timeout=120)


def created(r: subprocess.CompletedProcess[str]) -> list[str]:
    """The progress lines of a successful create."""
    assert r.returncode == 0, (r.stdout, r.stderr)
    lines = r.stderr.splitlines()
    assert lines[0] == "gathering model components" and lines[-1] == "success", lines
    assert "Traceback" not in r.stderr
    return lines


def tiny(path: Path, arch: str = "qwen2") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gguf_files.tiny(arch))
    return path


def manifest(server: Server, name: str) -> dict[str, object]:
    n = Name.parse(name)
    path = server.home / "manifests" / n.host / n.namespace / n.model / n.tag
    return json.loads(path.read_text())  # type: ignore[no-any-return]


def generate(server: Server, model: str) -> tuple[int, dict[str, object]]:
    with server.client() as c:
        r = c.post("/api/generate", json={"model": model, "prompt": "hi", "stream": False,
                                          "options": {"num_predict": 4}})
    return r.status_code, r.json()


def test_create_from_a_gguf_file_uploads_it_and_prints_ollamas_lines(
        pulled: Server, tmp_path: Path) -> None:
    tiny(tmp_path / "weights" / "tiny.gguf")
    (tmp_path / "Modelfile").write_text(
        f'FROM ./weights/tiny.gguf\nTEMPLATE """{TEMPLATE}"""\nSYSTEM Be brief.\n'
        "PARAMETER temperature 0\n")
    lines = created(roost(pulled, "create", "create-file", "-f", str(tmp_path / "Modelfile")))
    digest = "sha256:" + hashlib.sha256(gguf_files.tiny()).hexdigest()
    assert f"copying file {digest} 100%" in lines
    assert "parsing GGUF" in lines and "writing manifest" in lines
    assert any(line.startswith("creating new layer sha256:") for line in lines), lines
    layers = {la["mediaType"].rsplit(".", 1)[1]: la["digest"]  # type: ignore[index]
              for la in manifest(pulled, "create-file")["layers"]}  # type: ignore[attr-defined]
    assert layers["model"] == digest and {"template", "system", "params"} <= set(layers)
    # Again: the file is already there, and so is every layer.
    lines = created(roost(pulled, "create", "create-file-2", "-f", str(tmp_path / "Modelfile")))
    assert f"using existing file {digest}" in lines
    assert not any(line.startswith("creating new layer") for line in lines), lines


def test_create_from_a_folder_and_with_no_modelfile(pulled: Server, tmp_path: Path) -> None:
    tiny(tmp_path / "one" / "model.gguf", arch="llama")
    (tmp_path / "one" / "notes.txt").write_text("not a model")
    created(roost(pulled, "create", "create-dir", cwd=tmp_path / "one"))  # no Modelfile: FROM .
    (tmp_path / "Modelfile").write_text("FROM one\n")
    created(roost(pulled, "create", "create-dir-2", cwd=tmp_path))
    assert manifest(pulled, "create-dir")["layers"] == manifest(pulled, "create-dir-2")["layers"]
    tiny(tmp_path / "one" / "other.gguf")
    one_line_error(roost(pulled, "create", "create-dir-3", cwd=tmp_path / "one"),
                   "several .gguf files", "model.gguf, other.gguf")


def test_bad_modelfiles_are_one_line_errors(pulled: Server, tmp_path: Path) -> None:
    (tmp_path / "Modelfile").write_text(f"FROM {MODEL}\n# fine\nINSTRUCT be nice\n")
    one_line_error(roost(pulled, "create", "create-bad", cwd=tmp_path),
                   "line 3", "INSTRUCT", "command must be one of")
    (tmp_path / "Modelfile").write_text(f"FROM {MODEL}\nPARAMETER temperature warm\n")
    one_line_error(roost(pulled, "create", "create-bad", cwd=tmp_path), "line 2", "temperature")
    one_line_error(roost(pulled, "create", "create-bad", "-f", str(tmp_path / "nope")),
                   "cannot read the Modelfile")
    (tmp_path / "Modelfile").write_text("FROM no-such-model:1\n")
    r = roost(pulled, "create", "create-bad", cwd=tmp_path)  # the server's error
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    assert r.stderr.splitlines()[-1] == "Error: base model 'no-such-model:1' not found", r.stderr
    assert not (pulled.home / "manifests" / "registry.ollama.ai" / "library" / "create-bad").exists()


def test_a_missing_from_file_is_named_not_taken_for_a_model(pulled: Server, tmp_path: Path) -> None:
    """Found by a tester: `FROM ./missing.gguf` said "invalid model name './missing.gguf'"."""
    for value in ("./missing.gguf", "weights/missing.gguf", str(tmp_path / "gone")):
        (tmp_path / "Modelfile").write_text(f"FROM {value}\n")
        r = roost(pulled, "create", "create-missing", cwd=tmp_path)
        one_line_error(r, f"Error: Modelfile: line 1: {value}: no such file or directory")
    assert "create-missing" not in roost(pulled, "list").stdout


def test_requires_is_sent_kept_and_checked(pulled: Server, tmp_path: Path) -> None:
    """Found by a tester: REQUIRES was an unknown instruction. Roost keeps the version in the
    model's config (and never enforces it: it is Ollama's version, not Roost's)."""
    (tmp_path / "Modelfile").write_text(f"FROM {MODEL}\nREQUIRES 0.5.0\nSYSTEM Be brief.\n")
    created(roost(pulled, "create", "create-requires", cwd=tmp_path))
    config_digest = manifest(pulled, "create-requires")["config"]["digest"]  # type: ignore[index]
    config = json.loads((pulled.home / "blobs" / config_digest.replace(":", "-")).read_text())
    assert config["requires"] == "0.5.0"
    assert "REQUIRES 0.5.0" in roost(pulled, "show", "--modelfile", "create-requires").stdout
    assert "requires" in roost(pulled, "show", "create-requires").stdout
    status, answer = generate(pulled, "create-requires")  # a version above Roost's: still loads
    assert status == 200 and answer["eval_count"], answer
    (tmp_path / "Modelfile").write_text(f"FROM {MODEL}\nREQUIRES next-year\n")
    one_line_error(roost(pulled, "create", "create-requires-2", cwd=tmp_path),
                   "line 2", "REQUIRES 'next-year'", "semantic version")


def test_round_trip_through_show_modelfile_and_a_real_generation(
        pulled: Server, tmp_path: Path) -> None:
    """Every instruction (ADAPTER aside: it needs a LoRA of this model) survives show
    --modelfile: the Modelfile it prints makes a model with the very same layers."""
    (tmp_path / "Modelfile").write_text(f'''FROM {MODEL}
SYSTEM """You answer in one word."""
PARAMETER temperature 0
PARAMETER num_predict 8
PARAMETER stop "<|im_end|>"
PARAMETER stop """

"""
MESSAGE user What colour is the sky?
MESSAGE assistant """Blue.
(Mostly.)"""
LICENSE """Apache License
Version 2.0"""
LICENSE "second license"
''')
    created(roost(pulled, "create", "create-all", cwd=tmp_path))
    shown = roost(pulled, "show", "create-all", "--modelfile")
    assert shown.returncode == 0, shown.stderr
    for part in ("MESSAGE user What colour is the sky?", 'MESSAGE assistant """Blue.\n(Mostly.)"""',
                 'LICENSE """Apache License\nVersion 2.0\nsecond license"""', "TEMPLATE \"\"\"",
                 "PARAMETER num_predict 8", "PARAMETER stop <|im_end|>"):
        assert part in shown.stdout, shown.stdout
    (tmp_path / "again").mkdir()
    (tmp_path / "again" / "Modelfile").write_text(shown.stdout)
    lines = created(roost(pulled, "create", "create-all-again", cwd=tmp_path / "again"))
    assert any(line.startswith("using existing file sha256:") for line in lines), lines
    first, second = manifest(pulled, "create-all"), manifest(pulled, "create-all-again")
    assert first["layers"] == second["layers"]
    status, answer = generate(pulled, "create-all-again")
    assert status == 200 and answer["eval_count"] and answer["response"], answer  # type: ignore[index]


def test_link_makes_a_hard_link_on_the_same_filesystem(pulled: Server, tmp_path: Path) -> None:
    source = tiny(tmp_path / "linked.gguf", arch="phi3")
    (tmp_path / "Modelfile").write_text("FROM ./linked.gguf\n")
    lines = created(roost(pulled, "create", "create-hard", "--link", cwd=tmp_path))
    assert any(line.startswith("linking file") and "(a hard link)" in line for line in lines)
    digest = manifest(pulled, "create-hard")["layers"][0]["digest"]  # type: ignore[index]
    blob = pulled.home / "blobs" / digest.replace(":", "-")
    assert blob.stat().st_ino == source.stat().st_ino and not blob.is_symlink()
    os.utime(source, ns=(0, source.stat().st_mtime_ns + 10**9))  # edited in place, say
    status, answer = generate(pulled, "create-hard")
    assert status == 404 and "changed since it was linked" in str(answer["error"]), answer


@pytest.fixture()
def other_filesystem(pulled: Server) -> Iterator[Path]:
    """A folder on another filesystem than the store (tmpfs /dev/shm), so no hard link works."""
    shm = Path("/dev/shm")
    if not shm.is_dir() or shm.stat().st_dev == pulled.home.stat().st_dev:
        pytest.skip("needs /dev/shm on another filesystem than the store")
    folder = shm / f"roost-test-create-{os.getpid()}"
    folder.mkdir()
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_link_records_the_path_on_another_filesystem(pulled: Server, other_filesystem: Path) -> None:
    source = tiny(other_filesystem / "elsewhere.gguf", arch="gemma3")
    (other_filesystem / "Modelfile").write_text("FROM elsewhere.gguf\nSYSTEM hi\n")
    lines = created(roost(pulled, "create", "create-path", "--link", cwd=other_filesystem))
    assert any("(by path, checked at every load)" in line for line in lines), lines
    digest = manifest(pulled, "create-path")["layers"][0]["digest"]  # type: ignore[index]
    blob = pulled.home / "blobs" / digest.replace(":", "-")
    assert blob.is_symlink() and os.readlink(blob) == str(source)
    assert roost(pulled, "show", "create-path").returncode == 0
    # The file is touched: loading it is a clear error, and the blob no longer counts.
    os.utime(source, ns=(0, source.stat().st_mtime_ns + 10**9))
    r = roost(pulled, "run", "create-path", "hello")
    one_line_error(r, "elsewhere.gguf", "changed since it was linked")
    with pulled.client() as c:
        assert c.head(f"/api/blobs/{digest}").status_code == 404
    created(roost(pulled, "create", "create-path", "--link", cwd=other_filesystem))  # relinked
    with pulled.client() as c:
        assert c.head(f"/api/blobs/{digest}").status_code == 200
    source.unlink()
    status, answer = generate(pulled, "create-path")
    assert status == 404 and "is gone" in str(answer["error"]), answer


def test_link_is_refused_for_a_relative_path_or_a_wrong_digest(pulled: Server,
                                                               tmp_path: Path) -> None:
    source = tiny(tmp_path / "x.gguf", arch="starcoder2")
    wrong = "sha256:" + "0" * 64
    with pulled.client() as c:
        r = c.post(f"/api/blobs/{wrong}/link", json={"path": "x.gguf"})
        assert r.status_code == 400 and "absolute" in r.json()["error"], r.text
        r = c.post(f"/api/blobs/{wrong}/link", json={"path": str(source)})
        assert r.status_code == 400 and "does not have the digest" in r.json()["error"], r.text
        assert c.head(f"/api/blobs/{wrong}").status_code == 404
        notes = tmp_path / "notes.txt"
        notes.write_text("hello")
        r = c.post(f"/api/blobs/{wrong}/link", json={"path": str(notes)})
        assert r.status_code == 400 and "not a GGUF file" in r.json()["error"], r.text
        r = c.post(f"/api/blobs/{wrong}/link", json={"path": "/tmp/a\u0000b"})
        assert r.status_code == 400, r.text
