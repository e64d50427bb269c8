"""`/api/create` with `quantize`: llama.cpp's quantizer in a child process, on real files.

A tiny F16 model the test writes with the gguf package becomes Q8_0; the bundled
qwen2.5-coder:0.5b (Q4_K_M) is requantized down to Q4_0 and answers a prompt; what cannot be
done is a 400; a client that leaves stops the quantizer and leaves nothing behind.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import gguf
import numpy as np
import pytest

from roost.models import gguf_meta, quantize
from roost.models.resolve import resolve
from roost.models.store import Store
from tests.conftest import MODEL, Server, greedy, own_pulled_server, upload_blob


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with own_pulled_server(tmp_path_factory.mktemp("quantize-home")) as server:
        yield server


def write_tiny_f16(path: Path, n_embd: int = 64, n_vocab: int = 96, n_ff: int = 128) -> Path:
    """A one-block qwen2 model in F16 (norms F32, as converters write them), random weights."""
    rng = np.random.default_rng(0)
    w = gguf.GGUFWriter(str(path), "qwen2")
    w.add_name("tiny")
    w.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    w.add_context_length(128)
    w.add_embedding_length(n_embd)
    w.add_block_count(1)
    w.add_feed_forward_length(n_ff)
    w.add_head_count(2)
    w.add_head_count_kv(2)
    w.add_layer_norm_rms_eps(1e-6)
    w.add_tokenizer_model("gpt2")
    w.add_token_list([f"t{i}" for i in range(n_vocab)])

    def add(name: str, *shape: int) -> None:
        data = rng.standard_normal(shape).astype(np.float32) * 0.02
        w.add_tensor(name, data if len(shape) == 1 else data.astype(np.float16))

    add("token_embd.weight", n_vocab, n_embd)
    add("blk.0.attn_norm.weight", n_embd)
    for part in ("q", "k", "v", "output"):
        add(f"blk.0.attn_{part}.weight", n_embd, n_embd)
    add("blk.0.ffn_norm.weight", n_embd)
    add("blk.0.ffn_gate.weight", n_ff, n_embd)
    add("blk.0.ffn_up.weight", n_ff, n_embd)
    add("blk.0.ffn_down.weight", n_embd, n_ff)
    add("output_norm.weight", n_embd)
    add("output.weight", n_vocab, n_embd)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def create_events(server: Server, body: dict[str, object]) -> list[dict[str, object]]:
    with server.client(timeout=600) as c, c.stream("POST", "/api/create", json=body) as r:
        assert r.status_code == 200
        return [json.loads(line) for line in r.iter_lines() if line]


def weights_of(server: Server, name: str) -> Path:
    return resolve(Store(server.home), name).weights


def test_type_names_and_sources() -> None:
    assert quantize.parse_type("q4_k_m") == "Q4_K_M" and quantize.parse_type("Q4_K") == "Q4_K_M"
    with pytest.raises(quantize.QuantizeError, match="unsupported quantization type 'Q9_X'"):
        quantize.parse_type("Q9_X")
    quantize.check_source("F16", "Q4_K_M")
    quantize.check_source("Q8_0", "Q4_0")
    quantize.check_source("Q4_K_M", "Q4_0")  # requantizing down: llama.cpp allows it when asked
    with pytest.raises(quantize.QuantizeError, match="up to Q8_0"):
        quantize.check_source("Q4_K_M", "Q8_0")
    with pytest.raises(quantize.QuantizeError, match="already Q4_K_M"):
        quantize.check_source("Q4_K_M", "Q4_K_M")


def test_a_small_f16_gguf_becomes_q8_0(srv: Server, tmp_path: Path) -> None:
    digest = upload_blob(srv, write_tiny_f16(tmp_path / "tiny.gguf"))
    events = create_events(srv, {"model": "tiny:q8", "files": {"tiny.gguf": digest},
                                 "quantize": "q8_0"})
    assert events[-1] == {"status": "success"}, events
    steps = [e for e in events if e.get("status") == "quantizing F16 model to Q8_0"]
    assert steps and all(e["total"] == steps[0]["total"] for e in steps)
    assert steps[-1]["completed"] == steps[-1]["total"] and len(steps) > 2  # per tensor
    with srv.client() as c:
        show = c.post("/api/show", json={"model": "tiny:q8"}).json()
    assert show["details"]["quantization_level"] == "Q8_0"
    meta, _ = gguf_meta.read(weights_of(srv, "tiny:q8"), want_tokens=False)
    types = {t.name: t.type_name for t in meta.tensors}
    assert types["blk.0.attn_q.weight"] == "Q8_0" and types["blk.0.attn_norm.weight"] == "F32"
    assert not list((srv.home / "blobs").glob("*.partial"))


def test_the_bundled_model_requantized_to_q4_0_answers(srv: Server) -> None:
    started = time.monotonic()
    events = create_events(srv, {"model": "qwen-requant:q4_0", "from": MODEL, "quantize": "Q4_0"})
    seconds = time.monotonic() - started
    assert events[-1] == {"status": "success"}, events[-3:]
    assert any(e.get("status") == "quantizing Q4_K_M model to Q4_0" for e in events)
    print(f"requantizing {MODEL} Q4_K_M -> Q4_0 took {seconds:.1f} s")
    with srv.client() as c:
        assert c.post("/api/show", json={"model": "qwen-requant:q4_0"}).json()[
            "details"]["quantization_level"] == "Q4_0"
        r = c.post("/api/generate", json={"model": "qwen-requant:q4_0", "prompt": "Say hi.",
                                          "stream": False, "keep_alive": 0, "options": greedy(8)})
        assert r.status_code == 200, r.text
        assert r.json()["response"].strip() and r.json()["eval_count"] > 0


@pytest.mark.parametrize(("body", "words"), [
    ({"quantize": "Q9_X"}, "unsupported quantization type 'Q9_X'"),
    ({"quantize": "Q8_0"}, "Q4_K_M model cannot be quantized up to Q8_0"),
    ({"quantize": "Q4_K_M"}, "already Q4_K_M"),
])
def test_what_cannot_be_done_is_a_400(srv: Server, body: dict[str, object], words: str) -> None:
    for stream in (True, False):
        with srv.client() as c:
            r = c.post("/api/create", json={"model": "nope:1", "from": MODEL, "stream": stream, **body})
        if stream and r.status_code == 200:  # found once the stream began: its error line
            last = json.loads(r.text.splitlines()[-1])
            assert words in last["error"], r.text
        else:
            assert r.status_code == 400 and words in r.json()["error"], r.text
    with srv.client() as c:
        assert c.post("/api/show", json={"model": "nope:1"}).status_code == 404


def quantizers(server: Server) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(server.proc.pid), "-f", "quantize_main"],
                         capture_output=True, text=True)
    return [int(p) for p in out.stdout.split()]


def test_a_client_that_leaves_stops_the_quantizer(srv: Server) -> None:
    body = {"model": "qwen-gone:q4_0", "from": MODEL, "quantize": "Q4_0"}
    with srv.client() as c, c.stream("POST", "/api/create", json=body) as r:
        for line in r.iter_lines():
            event = json.loads(line)
            if event.get("completed"):  # the quantizer is at work
                break
        assert quantizers(srv)
    deadline = time.monotonic() + 20
    while (quantizers(srv) or list((srv.home / "blobs").glob("*.partial"))) and \
            time.monotonic() < deadline:
        time.sleep(0.2)
    assert not quantizers(srv)
    assert not list((srv.home / "blobs").glob("*.partial"))
    with srv.client() as c:
        assert c.post("/api/show", json={"model": "qwen-gone:q4_0"}).status_code == 404
    assert "Traceback" not in srv.log.read_text()
