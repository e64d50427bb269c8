"""Ollama's API on a real server with the real model: shapes, streaming, errors."""

from __future__ import annotations

import json
import re

import httpx2 as httpx

from tests.conftest import MODEL, Server, greedy

NS_FIELDS = ("total_duration", "load_duration", "prompt_eval_duration", "eval_duration")
RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")


def stream_lines(c: httpx.Client, path: str, body: dict) -> list[dict]:
    with c.stream("POST", path, json=body) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("application/x-ndjson")
        return [json.loads(line) for line in r.iter_lines() if line]


def assert_final(chunk: dict) -> None:
    assert chunk["done"] is True
    assert chunk["done_reason"] in ("stop", "length")
    for key in (*NS_FIELDS, "prompt_eval_count", "eval_count"):
        assert isinstance(chunk[key], int) and chunk[key] >= 0, key
    assert chunk["eval_count"] > 0 and chunk["prompt_eval_count"] > 0
    assert RFC3339.match(chunk["created_at"])


def test_generate_streamed_and_not_agree(pulled: Server) -> None:
    body = {"model": MODEL, "prompt": "Count from 1 to 5.", "options": greedy(16)}
    with pulled.client() as c:
        lines = stream_lines(c, "/api/generate", body)
        whole = c.post("/api/generate", json={**body, "stream": False}).json()
    assert all(not x["done"] for x in lines[:-1]) and len(lines) > 2
    assert_final(lines[-1])
    streamed = "".join(x["response"] for x in lines)
    assert streamed == whole["response"] and streamed.strip()
    assert_final(whole)
    assert whole["eval_count"] == lines[-1]["eval_count"] <= 16


def test_chat_streamed_every_chunk_has_role(pulled: Server) -> None:
    body = {"model": MODEL, "messages": [{"role": "user", "content": "Say hello."}],
            "options": greedy(12)}
    with pulled.client() as c:
        lines = stream_lines(c, "/api/chat", body)
        again = c.post("/api/chat", json={**body, "stream": False}).json()
    assert all(x["message"]["role"] == "assistant" for x in lines)
    assert_final(lines[-1])
    text = "".join(x["message"]["content"] for x in lines)
    assert text == again["message"]["content"] and text.strip()


def test_num_predict_and_stop(pulled: Server) -> None:
    with pulled.client() as c:
        r = c.post("/api/generate", json={
            "model": MODEL, "prompt": "List the numbers 1 to 20 separated by commas.",
            "stream": False, "options": greedy(5)}).json()
        assert r["done_reason"] == "length" and r["eval_count"] == 5
        s = c.post("/api/generate", json={
            "model": MODEL, "prompt": "List the numbers 1 to 20 separated by commas.",
            "stream": False, "options": greedy(60, stop=["7"])}).json()
    assert s["done_reason"] == "stop"
    assert "7" not in s["response"] and "6" in s["response"]


def test_raw_prompt_bypasses_template(pulled: Server) -> None:
    with pulled.client() as c:
        r = c.post("/api/generate", json={
            "model": MODEL, "prompt": "def fibonacci(n):", "raw": True,
            "stream": False, "options": greedy(8)}).json()
    assert r["response"] and r["prompt_eval_count"] <= 6


def test_format_json_always_parses(pulled: Server) -> None:
    with pulled.client() as c:
        r = c.post("/api/generate", json={
            "model": MODEL, "prompt": "Describe a cat as JSON with name and age.",
            "format": "json", "stream": False, "options": greedy(60)}).json()
    assert r["done_reason"] == "stop"
    assert isinstance(json.loads(r["response"]), dict)


def test_unknown_model_is_404(server: Server) -> None:
    with server.client() as c:
        for path, body in (("/api/generate", {"model": "nope:1b", "prompt": "hi"}),
                           ("/api/chat", {"model": "nope:1b", "messages": []}),
                           ("/api/show", {"model": "nope:1b"})):
            r = c.post(path, json=body)
            assert r.status_code == 404, path
            assert "not found" in r.json()["error"]
        r = c.request("DELETE", "/api/delete", json={"model": "nope:1b"})
        assert r.status_code == 404 and r.json()["error"]
        r = c.post("/api/pull", json={"model": "nope:1b"})
        assert r.status_code == 404 and r.json()["error"]


def test_bad_requests_are_400_with_error_body(pulled: Server) -> None:
    with pulled.client() as c:
        cases = [
            c.post("/api/generate", content=b"{not json", headers={"content-type": "application/json"}),
            c.post("/api/generate", content=b""),
            c.post("/api/chat", json={"messages": []}),
            c.post("/api/generate", json={"model": MODEL, "prompt": "x", "options": {"bogus": 1}}),
            c.post("/api/generate", json={"model": MODEL, "prompt": "x", "options": {"temperature": "hot"}}),
            c.post("/api/generate", json={"model": MODEL, "prompt": "x", "keep_alive": "soon"}),
            c.post("/api/generate", json={"model": "bad name!", "prompt": "x"}),
            c.post("/api/generate", json={"model": MODEL, "prompt": "x", "format": "yaml"}),
            c.post("/api/generate", json={"model": MODEL, "prompt": "x", "images": ["aGk="]}),
        ]
    for r in cases:
        assert r.status_code == 400, r.text
        assert isinstance(r.json()["error"], str) and r.json()["error"]
    assert "bogus" in cases[3].json()["error"]


def test_prompt_longer_than_context_is_400_when_truncate_is_false(pulled: Server) -> None:
    """As Ollama: truncated by default (tests/server/test_api_details.py), refused on request."""
    with pulled.client() as c:
        r = c.post("/api/generate", json={
            "model": MODEL, "prompt": "word " * 400, "stream": False, "truncate": False,
            "options": {"num_ctx": 256, "num_predict": 4}})
    assert r.status_code == 400 and "context" in r.json()["error"]


def test_tags_show_version(pulled: Server) -> None:
    with pulled.client() as c:
        tags = c.get("/api/tags").json()["models"]
        show = c.post("/api/show", json={"model": MODEL}).json()
        legacy = c.post("/api/show", json={"name": MODEL.upper()}).json()
        version = c.get("/api/version").json()
    entry = next(m for m in tags if m["name"] == MODEL)
    assert entry["model"] == MODEL and len(entry["digest"]) == 64
    assert entry["size"] > 491_000_000 and RFC3339.match(entry["modified_at"])
    assert entry["details"]["family"] == "qwen2" and entry["details"]["quantization_level"] == "Q4_K_M"
    assert show["model_info"]["general.architecture"] == "qwen2"
    assert "im_start" in show["template"] and "completion" in show["capabilities"]
    assert legacy["details"] == show["details"]
    assert version["server"] == "roost" and version["version"]


def test_show_verbose_adds_the_vocabulary_and_the_tensors(pulled: Server) -> None:
    """Ollama leaves the token arrays empty unless `verbose`, which also lists the tensors."""
    with pulled.client() as c:
        plain = c.post("/api/show", json={"model": MODEL}).json()
        verbose = c.post("/api/show", json={"model": MODEL, "verbose": True}).json()
    assert plain["model_info"]["tokenizer.ggml.tokens"] == [] and "tensors" not in plain
    info = verbose["model_info"]
    assert len(info["tokenizer.ggml.tokens"]) == 151936 and "<|im_start|>" in info["tokenizer.ggml.tokens"]
    assert len(info["tokenizer.ggml.merges"]) > 100_000 and len(info["tokenizer.ggml.token_type"]) == 151936
    by_name = {t["name"]: t for t in verbose["tensors"]}
    assert by_name["token_embd.weight"]["shape"] == [896, 151936]
    assert {t["type"] for t in verbose["tensors"]} >= {"F32", "Q4_K"}
    assert len(verbose["tensors"]) == 291  # 24 blocks of 12; the embedding, output and its norm


def test_load_ps_and_unload(pulled: Server) -> None:
    with pulled.client() as c:
        r = c.post("/api/generate", json={"model": MODEL, "keep_alive": "10m"}).json()
        assert r["done"] is True and r["done_reason"] == "load"
        ps = c.get("/api/ps").json()["models"]
        entry = next(m for m in ps if m["name"] == MODEL)
        assert entry["context_length"] >= 256 and entry["size"] > 0 and entry["size_vram"] == 0
        assert RFC3339.match(entry["expires_at"])
        r = c.post("/api/chat", json={"model": MODEL, "messages": [], "keep_alive": 0}).json()
        assert r["done_reason"] == "unload" and r["message"]["role"] == "assistant"
        assert all(m["name"] != MODEL for m in c.get("/api/ps").json()["models"])


def test_dns_rebinding_guard(pulled: Server) -> None:
    with pulled.client() as c:
        assert c.get("/api/version", headers={"Host": "evil.example"}).status_code == 403
        assert c.get("/api/version", headers={"Host": "localhost:11434"}).status_code == 200
        assert c.get("/", headers={"Host": "127.0.0.1"}).status_code == 200


def test_format_schema_is_enforced_and_unsupported_schema_is_400(pulled: Server) -> None:
    schema = {"type": "object", "properties": {"name": {"type": "string"},
                                               "age": {"type": "integer"}},
              "required": ["name", "age"]}
    with pulled.client() as c:
        ok = c.post("/api/chat", json={
            "model": MODEL, "stream": False, "format": schema, "options": greedy(60),
            "messages": [{"role": "user", "content": "Invent a person."}]}).json()
        data = json.loads(ok["message"]["content"])
        assert isinstance(data["name"], str) and isinstance(data["age"], int)
        bad = c.post("/api/generate", json={
            "model": MODEL, "prompt": "x", "stream": False,
            "format": {"type": "object", "properties": {"a": {"type": "blob"}}}})
    assert bad.status_code == 400
    assert "unsupported JSON schema" in bad.json()["error"] and "blob" in bad.json()["error"]


def test_logprobs(pulled: Server) -> None:
    with pulled.client() as c:
        r = c.post("/api/generate", json={"model": MODEL, "prompt": "Say yes.", "stream": False,
                                          "logprobs": True, "top_logprobs": 3,
                                          "options": greedy(5)}).json()
        lines = stream_lines(c, "/api/chat", {
            "model": MODEL, "messages": [{"role": "user", "content": "Say yes."}],
            "logprobs": True, "options": greedy(5)})
        bad = c.post("/api/generate", json={"model": MODEL, "prompt": "x", "top_logprobs": 50})
    entries = r["logprobs"]
    assert len(entries) == r["eval_count"]
    assert "".join(e["token"] for e in entries) == r["response"]
    for e in entries:
        assert e["logprob"] <= 0 and len(e["top_logprobs"]) == 3
        # greedy decoding picks the most likely token
        assert e["top_logprobs"][0]["token"] == e["token"]
        assert abs(e["top_logprobs"][0]["logprob"] - e["logprob"]) < 1e-6
    streamed = [e for x in lines for e in x.get("logprobs", [])]
    assert streamed and all("top_logprobs" not in e for e in streamed)
    assert bad.status_code == 400


def test_a_long_conversation_loses_its_oldest_turns_whole(pulled: Server) -> None:
    """Over the context, the oldest turns are left out (never half a message); the newest stays."""
    filler = "Here is some background that goes on and on about rivers and hills. " * 12
    messages = [{"role": "system", "content": "You are terse."}]
    for i in range(12):
        messages += [{"role": "user", "content": f"Note {i}: {filler}"},
                     {"role": "assistant", "content": f"Noted {i}."}]
    messages.append({"role": "user", "content": "Reply with the single word DONE."})
    with pulled.client() as c:
        r = c.post("/api/chat", json={"model": MODEL, "messages": messages, "stream": False,
                                      "options": {"temperature": 0, "num_predict": 4, "num_ctx": 1024}})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["prompt_eval_count"] < 1024 and body["message"]["content"]
        # One message alone longer than the context is refused, with a reason, when the
        # request asks not to truncate (by default its start is cut, as Ollama does).
        r = c.post("/api/chat", json={"model": MODEL, "stream": False, "options": {"num_ctx": 1024},
                                      "truncate": False,
                                      "messages": [{"role": "user", "content": filler * 20}]})
        assert r.status_code == 400 and "longer than the context" in r.json()["error"]
