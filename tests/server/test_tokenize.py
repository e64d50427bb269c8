"""Tokenize and detokenize with the real model's own tokenizer, in Roost's and llama-server's
spellings: round trips, the special-token flags, pieces, and errors."""

from __future__ import annotations

from typing import Any

import httpx2 as httpx
import pytest

from tests.conftest import MODEL, Server

TEXT = "Roost tokenizes, then detokenizes: héllo wörld 🤗"
SPECIAL = "<|im_start|>user\nhi<|im_end|>"


def post(c: httpx.Client, path: str, body: dict[str, Any], status: int = 200) -> dict[str, Any]:
    r = c.post(path, json=body)
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    answer: dict[str, Any] = r.json()
    return answer


def test_round_trip_in_both_spellings(pulled: Server) -> None:
    with pulled.client() as c:
        tokens = post(c, "/api/tokenize", {"model": MODEL, "text": TEXT})["tokens"]
        assert tokens and all(isinstance(t, int) for t in tokens)
        assert post(c, "/api/detokenize", {"model": MODEL, "tokens": tokens}) == {"text": TEXT}

        same = post(c, "/tokenize", {"model": MODEL, "content": TEXT})["tokens"]
        assert same == tokens  # qwen2.5 adds no BOS, so the defaults agree
        assert post(c, "/detokenize", {"model": MODEL, "tokens": same}) == {"content": TEXT}


def test_pieces_rebuild_the_bytes(pulled: Server) -> None:
    """A piece that is not whole UTF-8 (part of the emoji) comes as its bytes."""
    with pulled.client() as c:
        tokens = post(c, "/tokenize", {"model": MODEL, "content": TEXT, "with_pieces": True})["tokens"]
    assert all(set(t) == {"id", "piece"} for t in tokens)
    data = b"".join(t["piece"].encode() if isinstance(t["piece"], str) else bytes(t["piece"])
                    for t in tokens)
    assert data == TEXT.encode()
    assert any(isinstance(t["piece"], list) for t in tokens)  # 🤗 spans two byte-level tokens


def test_special_tokens_optional(pulled: Server) -> None:
    with pulled.client() as c:
        parsed = post(c, "/api/tokenize", {"model": MODEL, "text": SPECIAL})["tokens"]
        plain = post(c, "/api/tokenize", {"model": MODEL, "text": SPECIAL, "special": False})["tokens"]
        assert len(parsed) < len(plain)  # <|im_start|> is one token, or a dozen characters
        assert post(c, "/tokenize", {"model": MODEL, "content": SPECIAL,
                                     "parse_special": False})["tokens"] == plain
        assert post(c, "/api/detokenize", {"model": MODEL, "tokens": parsed}) == {"text": SPECIAL}
        without = post(c, "/api/detokenize", {"model": MODEL, "tokens": parsed, "special": False})
        assert without == {"text": "user\nhi"}
        assert post(c, "/api/detokenize", {"model": MODEL, "tokens": plain}) == {"text": SPECIAL}


def test_model_may_be_left_out_on_llama_server_routes(pulled: Server) -> None:
    with pulled.client() as c:
        post(c, "/api/tokenize", {"model": MODEL, "text": "x"})  # loaded
        loaded = [m["name"] for m in c.get("/api/ps").json()["models"]]
        if loaded == [MODEL]:
            assert post(c, "/detokenize", {"tokens": post(c, "/tokenize", {"content": "hi"})["tokens"]}) \
                == {"content": "hi"}
        else:  # another test left a second model loaded: the name is needed then
            assert "model is required" in post(c, "/tokenize", {"content": "hi"}, 400)["error"]


@pytest.mark.parametrize(("path", "body", "status", "words"), [
    ("/api/tokenize", {"model": "no-such-model", "text": "x"}, 404, "not found"),
    ("/api/detokenize", {"model": "no-such-model", "tokens": [1]}, 404, "not found"),
    ("/api/detokenize", {"model": MODEL, "tokens": [10**9]}, 400, "out of range"),
    ("/api/detokenize", {"model": MODEL, "tokens": [-1]}, 400, "out of range"),
    ("/detokenize", {"model": MODEL, "tokens": [1, 2**40]}, 400, "out of range"),
    ("/api/detokenize", {"model": MODEL, "tokens": ["7"]}, 400, "tokens.0"),
    ("/api/detokenize", {"model": MODEL, "tokens": [1.5]}, 400, "tokens.0"),
    ("/api/tokenize", {"model": MODEL}, 400, "text"),
    ("/tokenize", {"model": "bad name!", "content": "x"}, 400, ""),
])
def test_errors(pulled: Server, path: str, body: dict[str, Any], status: int, words: str) -> None:
    with pulled.client() as c:
        error = post(c, path, body, status)["error"]
    assert isinstance(error, str) and words in error


def test_documented(pulled: Server) -> None:
    with pulled.client() as c:
        paths = c.get("/openapi.json").json()["paths"]
    for path in ("/api/tokenize", "/api/detokenize", "/tokenize", "/detokenize"):
        assert {"200", "400", "404"} <= set(paths[path]["post"]["responses"]), path
