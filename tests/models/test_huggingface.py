"""Pulls from the Hugging Face Hub: `hf.co/ORG/REPO[:QUANT]` names, and catalog models whose
packages are not installed. The Hub is tests/support/fake_hub.py on 127.0.0.1 (there is no
network here), serving the bundled models' real GGUF bytes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from roost.models import catalog, huggingface, pull
from roost.models.names import Name
from roost.models.store import Store
from tests.conftest import Server, one_line_error, roost_cli, start_server, stop_server
from tests.support import fake_hub, gguf_files
from tests.support.fake_hub import FakeHub, File

QWEN = catalog.find(Name.parse("qwen2.5-coder:0.5b"))
GEMMA = catalog.find(Name.parse("gemma3:270m"))
assert QWEN is not None and GEMMA is not None
QWEN_REPO = "roost-test/Qwen2.5-Coder-0.5B-Instruct-GGUF"
TINY = gguf_files.tiny()
TOKEN = "hf_roost_test_token"


@pytest.fixture(scope="module")
def hub() -> Iterator[FakeHub]:
    hub = FakeHub()
    hub.add(QWEN_REPO, {QWEN.hf_file: File.catalog(QWEN), "tiny-Q8_0.gguf": File.of(TINY),
                        "README.md": File.of(b"# test\n")})
    hub.add(GEMMA.hf_repo, {GEMMA.hf_file: File.catalog(GEMMA)})
    hub.add("roost-test/tiny-GGUF", {"tiny-Q8_0.gguf": File.of(TINY),
                                     "tiny-F16.gguf": File.of(TINY + b"\0" * 64)})
    hub.add("roost-test/safetensors", {"model.safetensors": File.of(b"\0" * 64),
                                       "config.json": File.of(b"{}")})
    hub.add("roost-test/junk-GGUF", {"junk-Q4_K_M.gguf": File.of(b"not a gguf " * 50)})
    hub.add("roost-test/private-GGUF", {"tiny-Q8_0.gguf": File.of(TINY)}, token=TOKEN)
    servers = fake_hub.start(hub)
    yield hub
    fake_hub.stop(servers)


@pytest.fixture()
def at_hub(hub: FakeHub, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> FakeHub:
    """This process talks to the fake Hub, with no token and its own HF_HOME."""
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    hub.redirect_files = False
    hub.seen.clear()
    return hub


FILES = [("m-Q8_0.gguf", 800), ("m-Q4_K_M.gguf", 400), ("m-Q4_K_S.gguf", 380),
         ("sub/m-IQ3_M.gguf", 300), ("m-BF16.gguf", 1600), ("mmproj-m-f16.gguf", 90),
         ("m-Q2_K-00001-of-00002.gguf", 50), ("README.md", 1)]


@pytest.mark.parametrize(("tag", "chosen"), [
    ("Q8_0", "m-Q8_0.gguf"), ("q4_k_m", "m-Q4_K_M.gguf"), ("iq3_m", "sub/m-IQ3_M.gguf"),
    ("bf16", "m-BF16.gguf"), ("latest", "m-Q4_K_M.gguf"), ("M-Q4_K_S.GGUF", "m-Q4_K_S.gguf"),
])
def test_the_tag_picks_the_quant(tag: str, chosen: str) -> None:
    assert huggingface.choose(FILES, "o/r", tag) == chosen


def test_without_q4_k_m_latest_is_the_smallest_model_file() -> None:
    """Not the projector, not a shard of a split file, not a file that is not a GGUF."""
    files = [f for f in FILES if "Q4_K_M" not in f[0]]
    assert huggingface.choose(files, "o/r", "latest") == "sub/m-IQ3_M.gguf"


@pytest.mark.parametrize("tag", ["Q4_K", "F16", "Q5_K_M"])
def test_a_tag_no_file_names_is_a_400_listing_the_files(tag: str) -> None:
    with pytest.raises(huggingface.HubError) as err:
        huggingface.choose(FILES, "o/r", tag)
    assert err.value.status == 400 and f"'{tag}'" in str(err.value) and "m-Q8_0.gguf" in str(err.value)


def test_resolve_lists_the_repo_and_pins_its_commit(at_hub: FakeHub) -> None:
    file = huggingface.resolve(Name.parse("hf.co/roost-test/tiny-GGUF"))
    assert (file.path, file.size, file.revision) == ("tiny-Q8_0.gguf", len(TINY), fake_hub.COMMIT)
    assert file.sha256 == File.of(TINY).sha256
    file = huggingface.resolve(Name.parse(f"huggingface.co/{QWEN_REPO}:Q4_K_M"))
    assert (file.path, file.sha256) == (QWEN.hf_file, QWEN.sha256)


@pytest.mark.parametrize(("model", "status", "words"), [
    ("hf.co/roost-test/safetensors", 400, "has no GGUF"),
    ("hf.co/roost-test/no-such-repo", 404, "not found"),
    ("hf.co/roost-test/private-GGUF", 404, "HF_TOKEN"),
    ("hf.co/roost-test/tiny-GGUF:Q4_K_M", 400, "'Q4_K_M' is not available"),
])
def test_what_cannot_be_pulled_is_a_clear_error(at_hub: FakeHub, model: str, status: int,
                                                words: str) -> None:
    with pytest.raises(huggingface.HubError) as err:
        huggingface.resolve(Name.parse(model))
    assert err.value.status == status and words in str(err.value)
    assert "\n" not in str(err.value)


def test_a_catalog_file_is_found_on_the_hub_by_its_sha256(at_hub: FakeHub) -> None:
    """A renamed file (here: another case) is still the catalog's; another file never is."""
    tiny = File.of(TINY)
    file = huggingface.locate("roost-test/tiny-GGUF", "TINY-q8_0.gguf", tiny.sha256, tiny.size)
    assert (file.path, file.revision) == ("tiny-Q8_0.gguf", fake_hub.COMMIT)
    with pytest.raises(huggingface.HubError) as err:
        huggingface.locate("roost-test/tiny-GGUF", "tiny-Q8_0.gguf", "0" * 64, tiny.size)
    assert err.value.status == 404 and "no file with the sha256" in str(err.value)


def test_hf_token_goes_to_the_hub_and_not_past_its_redirect(at_hub: FakeHub,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    at_hub.redirect_files = True
    file = huggingface.resolve(Name.parse("hf.co/roost-test/private-GGUF:q8_0"))
    chunks, start = huggingface.open_stream(file)
    assert (b"".join(chunks), start) == (TINY, 0)
    chunks, start = huggingface.open_stream(file, 100)
    assert (b"".join(chunks), start) == (TINY[100:], 100)
    info = at_hub.requests_to("/api/models/roost-test/private-GGUF")
    resolve = at_hub.requests_to("/roost-test/private-GGUF/resolve/")
    cdn = at_hub.requests_to("/cdn/roost-test/private-GGUF/")
    assert info and resolve and len(cdn) == 2
    assert {s.authorization for s in info + resolve} == {f"Bearer {TOKEN}"}
    assert {s.authorization for s in cdn} == {None}


def test_pull_hub_writes_the_model_under_its_hf_name(at_hub: FakeHub, tmp_path: Path) -> None:
    store, events = Store(tmp_path / "home"), []
    pull.pull_hub(store, Name.parse("hf.co/roost-test/tiny-GGUF:Q8_0"), events.append)
    statuses = [e["status"] for e in events]
    assert statuses[0] == "pulling manifest" and statuses[-1] == "success"
    assert f"pulling from {at_hub.url}/roost-test/tiny-GGUF (tiny-Q8_0.gguf)" in statuses
    assert "verifying sha256 digest" in statuses and statuses[-2] == "writing manifest"
    last = [e for e in events if e.get("digest")][-1]
    assert last["completed"] == last["total"] == len(TINY)
    manifest = store.get(Name.parse("hf.co/roost-test/tiny-GGUF:Q8_0"))
    assert manifest is not None and manifest.layers[0].size == len(TINY)
    assert (tmp_path / "home/manifests/hf.co/roost-test/tiny-GGUF/Q8_0").is_file()
    assert not (tmp_path / "hf-home").exists() or not any((tmp_path / "hf-home").rglob("*.gguf"))


def test_a_cut_download_resumes_where_it_stopped(at_hub: FakeHub, tmp_path: Path) -> None:
    store, name = Store(tmp_path / "home"), Name.parse("hf.co/roost-test/tiny-GGUF:Q8_0")
    at_hub.cut_after["tiny-Q8_0.gguf"] = 64
    with pytest.raises(huggingface.HubError) as err:
        pull.pull_hub(store, name, lambda e: None)
    assert err.value.status == 502 and "resumes" in str(err.value) and store.entries() == []
    pull.pull_hub(store, name, lambda e: None)
    gets = at_hub.requests_to("/roost-test/tiny-GGUF/resolve/")
    assert [g.range for g in gets] == [None, "bytes=64-"]
    assert store.read_bytes(File.of(TINY).sha256.join(["sha256:", ""])) == TINY


def test_a_file_that_is_not_a_gguf_is_not_kept(at_hub: FakeHub, tmp_path: Path) -> None:
    store = Store(tmp_path / "home")
    with pytest.raises(huggingface.HubError) as err:
        pull.pull_hub(store, Name.parse("hf.co/roost-test/junk-GGUF"), lambda e: None)
    assert err.value.status == 400
    assert store.entries() == [] and not any((tmp_path / "home/blobs").iterdir())


def test_catalog_pull_says_it_used_the_installed_packages(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ROOST_CATALOG_SOURCE", raising=False)
    events: list[dict[str, object]] = []
    pull.pull(Store(tmp_path / "home"), Name.parse("gemma3:270m"), events.append)
    first, last = GEMMA.parts[0].package, GEMMA.parts[-1].package
    assert {"status": f"pulling from installed packages {first} to {last}"} in events
    assert events[-1] == {"status": "success"}


def test_catalog_without_packages_or_hub_names_both_causes(at_hub: FakeHub, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """Packages "not installed" is a monkeypatch here: uninstalling them would break the suite."""
    def missing(entry: catalog.CatalogModel) -> list[Path]:
        raise catalog.PartsMissing(f"{entry.name}: package {entry.parts[0].package} is not installed")

    monkeypatch.setattr(catalog, "part_paths", missing)
    monkeypatch.delenv("ROOST_CATALOG_SOURCE", raising=False)
    gemma_repo = at_hub.repos.pop(GEMMA.hf_repo)
    try:
        with pytest.raises(huggingface.HubError) as err:
            pull.pull(Store(tmp_path / "home"), Name.parse("gemma3:270m"), lambda e: None)
    finally:
        at_hub.repos[GEMMA.hf_repo] = gemma_repo
    assert "is not installed" in str(err.value) and GEMMA.hf_repo in str(err.value)
    monkeypatch.setenv("ROOST_CATALOG_SOURCE", "packages")
    with pytest.raises(catalog.PartsMissing):
        pull.pull(Store(tmp_path / "home"), Name.parse("gemma3:270m"), lambda e: None)


@pytest.fixture(scope="module")
def hub_server(hub: FakeHub, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A real server whose Hub is the fake one, told to take catalog models from the Hub."""
    home = tmp_path_factory.mktemp("roost-hf")
    srv = start_server(home / "roost", {"HF_ENDPOINT": hub.url, "HF_HOME": str(home / "hf"),
                                        "ROOST_CATALOG_SOURCE": "hf"})
    try:
        yield srv
    finally:
        stop_server(srv)


def test_roost_pull_and_run_an_hf_model(hub: FakeHub, hub_server: Server) -> None:
    """The whole path: CLI -> server -> Hub -> store; then the GGUF's own template answers."""
    hub.redirect_files = True
    name = f"hf.co/{QWEN_REPO}:Q4_K_M"
    r = roost_cli(hub_server, "pull", name)
    assert r.returncode == 0, r.stderr
    assert f"pulling from {hub.url}/{QWEN_REPO} ({QWEN.hf_file})" in r.stderr
    assert "verifying sha256 digest" in r.stderr and r.stderr.rstrip().endswith("success")
    listed = roost_cli(hub_server, "list")
    assert name in listed.stdout, listed.stdout
    with hub_server.client() as c:
        shown = c.post("/api/show", json={"model": name}).json()
    assert "<|im_start|>" in shown["template"] and shown["details"]["quantization_level"] == "Q4_K_M"
    run = roost_cli(hub_server, "run", name, "Say hi", "-o", "num_predict=8", "-o", "temperature=0")
    assert run.returncode == 0 and run.stdout.strip(), run.stderr
    assert "<|im_" not in run.stdout
    hf_home = hub_server.home.parent / "hf"
    assert not hf_home.exists() or not any(p.stat().st_size > 1 << 20 for p in hf_home.rglob("*")
                                           if p.is_file())


def test_what_the_hub_lacks_is_a_plain_4xx_and_one_cli_line(hub_server: Server) -> None:
    with hub_server.client() as c:
        r = c.post("/api/pull", json={"model": "hf.co/roost-test/no-such-repo"})
    assert r.status_code == 404 and "not found" in r.json()["error"]
    one_line_error(roost_cli(hub_server, "pull", "hf.co/roost-test/safetensors"), "has no GGUF")


def test_a_catalog_model_comes_from_its_hub_repo(hub: FakeHub, hub_server: Server) -> None:
    with hub_server.client() as c, c.stream("POST", "/api/pull", json={"model": "gemma3:270m"}) as s:
        events = [json.loads(line) for line in s.iter_lines() if line]
    assert events[-1] == {"status": "success"}, events[-3:]
    assert {"status": f"pulling from {hub.url}/{GEMMA.hf_repo} ({GEMMA.hf_file})"} in events
    gets = hub.requests_to(f"/{GEMMA.hf_repo}/resolve/{fake_hub.COMMIT}/{GEMMA.hf_file}")
    assert gets, "the weights were not fetched from the Hub"
    doc = json.loads((hub_server.home / "manifests/registry.ollama.ai/library/gemma3/270m").read_text())
    assert [la["mediaType"].rsplit(".", 1)[-1] for la in doc["layers"]] == ["model", "template", "params"]
