"""The API details where Ollama's behaviour is the reference: generate's context and suffix,
truncation of over-long prompts, completions' max_tokens, reasoning efforts, tool-call ids'
shape, /api/tags and /api/ps fields, not-found wording, and raw GBNF grammars."""

from __future__ import annotations

import hashlib
import re

import pytest

from roost.server import grammar
from roost.server.inference import tool_call_id
from tests.conftest import MODEL, Server, greedy
from tests.support import gguf_files


def generate(srv: Server, **body: object) -> dict:
    with srv.client() as c:
        r = c.post("/api/generate", json={"model": MODEL, "stream": False, **body})
    assert r.status_code == 200, r.text
    return r.json()


def test_context_continues_a_generate_conversation(pulled: Server) -> None:
    first = generate(pulled, prompt="My name is Zed. Reply only: OK.", options=greedy(8))
    context = first["context"]
    assert all(isinstance(t, int) for t in context)
    assert len(context) >= first["prompt_eval_count"] + first["eval_count"] - 1
    second = generate(pulled, prompt="What is my name? Answer with the name only.",
                      context=context, options=greedy(8))
    assert "Zed" in second["response"], second["response"]
    assert len(second["context"]) > len(context)  # the conversation grows from the first
    raw = generate(pulled, prompt="1, 2, 3,", raw=True, options=greedy(4))
    assert "context" not in raw  # as Ollama: a raw prompt has no template to continue


def test_suffix_fills_the_middle(pulled: Server) -> None:
    with pulled.client() as c:
        show = c.post("/api/show", json={"model": MODEL}).json()
    assert "insert" in show["capabilities"]
    out = generate(pulled, prompt="def add(a, b):\n    return", suffix="\n\nprint(add(1, 2))",
                   options=greedy(12))
    assert "a + b" in out["response"] or "a+b" in out["response"], out["response"]
    with pulled.client() as c:
        r = c.post("/v1/completions", json={"model": MODEL, "prompt": "def add(a, b):\n    return",
                                            "suffix": "\n\nprint(add(1, 2))", "temperature": 0,
                                            "max_tokens": 12})
    assert r.status_code == 200, r.text
    assert "a + b" in r.json()["choices"][0]["text"] or "a+b" in r.json()["choices"][0]["text"]


def test_suffix_on_a_model_without_insert_is_400(pulled: Server) -> None:
    """A synthetic GGUF with no fill-in-the-middle tokens: refused before any load."""
    data = gguf_files.tiny()
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    with pulled.client() as c:
        assert c.post(f"/api/blobs/{digest}", content=data).status_code in (200, 201)
        r = c.post("/api/create", json={"model": "no-fim", "stream": False,
                                        "files": {"t.gguf": digest}})
        assert r.status_code == 200, r.text
        r = c.post("/api/generate", json={"model": "no-fim", "prompt": "a", "suffix": "b",
                                          "stream": False})
        assert r.status_code == 400 and r.json()["error"] == '"no-fim" does not support insert'
        c.request("DELETE", "/api/delete", json={"model": "no-fim"})


def test_long_prompt_truncated_by_default_and_refused_without(pulled: Server) -> None:
    long = "The quick brown fox jumps over the lazy dog. " * 70  # about 700 tokens
    opts = greedy(4, num_ctx=512)
    out = generate(pulled, prompt=long + "\nHow many dogs?", options=opts)
    assert 0 < out["prompt_eval_count"] <= 512 and out["done"]
    with pulled.client() as c:
        r = c.post("/api/generate", json={"model": MODEL, "prompt": long, "stream": False,
                                          "truncate": False, "options": opts})
        assert r.status_code == 400 and "longer than the context" in r.json()["error"], r.text
        turns = [{"role": "user", "content": long}, {"role": "assistant", "content": "OK."},
                 {"role": "user", "content": "Say hi."}]
        r = c.post("/api/chat", json={"model": MODEL, "messages": turns, "stream": False,
                                      "options": opts})
        assert r.status_code == 200 and r.json()["prompt_eval_count"] < 512, r.text
        r = c.post("/api/chat", json={"model": MODEL, "messages": turns, "stream": False,
                                      "truncate": False, "options": opts})
        assert r.status_code == 400, r.text


def test_completions_max_tokens_defaults_to_unlimited(pulled: Server) -> None:
    with pulled.client() as c:
        r = c.post("/v1/completions", json={"model": MODEL, "temperature": 0, "seed": 1,
                                            "stop": ["12"],
                                            "prompt": "Write the numbers from 1 to 40, one per line:\n"})
    assert r.status_code == 200, r.text
    assert r.json()["usage"]["completion_tokens"] > 16


def test_reasoning_effort_maps_to_think(pulled: Server) -> None:
    """qwen2.5-coder cannot think: "none" (think false) is accepted, a level reaches the
    thinking check (Ollama's 400), and an unknown effort is refused."""
    chat = {"model": MODEL, "max_tokens": 2, "messages": [{"role": "user", "content": "Hi"}]}
    with pulled.client() as c:
        assert c.post("/v1/chat/completions", json={**chat, "reasoning_effort": "none"}).status_code == 200
        r = c.post("/v1/chat/completions", json={**chat, "reasoning": {"effort": "low"}})
        assert r.status_code == 400 and "does not support thinking" in r.json()["error"]["message"]
        r = c.post("/v1/chat/completions", json={**chat, "reasoning_effort": "extreme"})
        assert r.status_code == 400 and "invalid reasoning value" in r.json()["error"]["message"]


def test_tool_call_ids_have_ollamas_shape() -> None:
    ids = {tool_call_id() for _ in range(50)}
    assert len(ids) == 50 and all(re.fullmatch(r"call_[a-z0-9]{8}", i) for i in ids)


def test_tags_and_ps_fields_and_not_found(pulled: Server) -> None:
    with pulled.client() as c:
        generate(pulled, prompt="Hi", options=greedy(1))
        entry = next(m for m in c.get("/api/tags").json()["models"] if m["name"] == MODEL)
        assert entry["details"]["context_length"] == 32768
        assert {"completion", "tools", "insert"} <= set(entry["capabilities"])
        ps = c.get("/api/ps").json()["models"]
        assert [m["expires_at"] for m in ps] == sorted((m["expires_at"] for m in ps), reverse=True)
        for path, body in (("/api/generate", {"prompt": "Hi"}),
                           ("/api/chat", {"messages": [{"role": "user", "content": "Hi"}]})):
            r = c.post(path, json={"model": "nope:1b", "stream": False, **body})
            assert r.status_code == 404
            assert r.json()["error"] == "model 'nope:1b' not found, try pulling it first"


def test_grammar_constrains_and_a_bad_one_is_400(pulled: Server) -> None:
    gbnf = 'root ::= ("yes" | "no") "!"'
    out = generate(pulled, prompt="Is the sky blue?", grammar=gbnf, options=greedy(8))
    assert out["response"] in ("yes!", "no!"), out["response"]
    with pulled.client() as c:
        r = c.post("/v1/chat/completions", json={
            "model": MODEL, "grammar": "root ::= [0-9]+", "temperature": 0, "max_tokens": 6,
            "messages": [{"role": "user", "content": "Pick a number"}]})
        assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"].isdigit()
        for path, body in (("/api/generate", {"prompt": "Hi"}),
                           ("/api/chat", {"messages": [{"role": "user", "content": "Hi"}]}),
                           ("/v1/completions", {"prompt": "Hi"}),
                           ("/v1/chat/completions", {"messages": [{"role": "user", "content": "Hi"}]})):
            r = c.post(path, json={"model": MODEL, "stream": False, "grammar": 'root ::= "a"{2,1}',
                                   **body})
            assert r.status_code == 400 and "max below min" in r.text, (path, r.text)


@pytest.mark.parametrize("text", ['root ::= "a', "root ::= foo", "x ::= [a-z]", "root ::= *",
                                  "root ::= (\"a\"", 'root ::= "a"{2,1}', "root ::= [a-"])
def test_grammar_check_refuses(text: str) -> None:
    with pytest.raises(grammar.GrammarSyntaxError):
        grammar.check(text)


@pytest.mark.parametrize("text", ['root ::= "a" | "b"', 'root ::= ("a" | "b")* {2,3}',
                                  "root ::= <[1000]> x\nx ::= [^\\]\\\\]+ # note\n",
                                  'root ::= (\n  "a"\n  | "b"\n)', "root ::= .{0,4}"])
def test_grammar_check_accepts(text: str) -> None:
    grammar.check(text)


def test_an_answer_that_fills_the_context_shifts_it_unless_told_not_to(pulled: Server) -> None:
    """Ollama's default: the oldest half of the context goes and the answer goes on."""
    body = {"model": MODEL, "stream": False,
            "prompt": "Write a long Python module implementing a linked list class with many "
                      "methods, each with a docstring.",
            "options": {"num_ctx": 128, "num_predict": 160, "temperature": 0, "seed": 1}}
    with pulled.client(timeout=300) as c:
        shifted = c.post("/api/generate", json=body).json()
        ended = c.post("/api/generate", json={**body, "shift": False}).json()
        # num_keep -1 keeps the whole prompt through every shift (Ollama's meaning)
        whole = {**body, "options": {**body["options"], "num_keep": -1}}
        kept = c.post("/api/generate", json=whole).json()
    assert shifted["prompt_eval_count"] + shifted["eval_count"] > 128, shifted  # past the context
    assert kept["prompt_eval_count"] + kept["eval_count"] > 128, kept
    assert kept["response"] != shifted["response"]  # what the model still saw differed
    assert ended["done_reason"] == "length", ended
    assert ended["prompt_eval_count"] + ended["eval_count"] <= 128, ended


def test_a_null_field_means_its_default(pulled: Server) -> None:
    """`"stream": null` is "not set" to OpenAI's spec and to Ollama's Go decoder."""
    hi = [{"role": "user", "content": "hi"}]
    with pulled.client() as c:
        chat = c.post("/api/chat", json={"model": MODEL, "messages": hi, "stream": None,
                                         "options": greedy(2)})
        gen = c.post("/api/generate", json={"model": MODEL, "prompt": "hi", "raw": None,
                                            "stream": False, "options": greedy(2)})
        embed = c.post("/api/embed", json={"model": MODEL, "input": "hi", "truncate": None})
        oai = c.post("/v1/chat/completions", json={"model": MODEL, "messages": hi, "stream": None,
                                                   "max_tokens": 2})
        vectors = c.post("/v1/embeddings", json={"model": MODEL, "input": "hi",
                                                 "encoding_format": None})
        messages = c.post("/v1/messages", json={"model": MODEL, "messages": hi, "stream": None,
                                                "max_tokens": 2})
        missing = c.post("/api/generate", json={"model": None, "prompt": "hi"})
    assert chat.status_code == 200 and len(chat.text.splitlines()) > 1  # Ollama's default: a stream
    assert gen.status_code == 200 and gen.json()["done"]
    assert embed.status_code == 200 and embed.json()["embeddings"]
    assert oai.status_code == 200 and oai.json()["object"] == "chat.completion"
    assert vectors.status_code == 200 and isinstance(vectors.json()["data"][0]["embedding"], list)
    assert messages.status_code == 200 and messages.json()["type"] == "message"
    assert missing.status_code == 400  # a required field stays required
