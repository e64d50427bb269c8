"""The official `ollama` Python client, unchanged, against a real `roost serve`."""

from __future__ import annotations

import ollama
import pytest

from tests.conftest import MODEL, Server, greedy


@pytest.fixture()
def client(pulled: Server) -> ollama.Client:
    return ollama.Client(host=pulled.url)


def test_list_and_show(client: ollama.Client) -> None:
    names = [m.model for m in client.list().models]
    assert MODEL in names
    info = client.show(MODEL)
    assert info.modelinfo is not None and info.modelinfo["general.architecture"] == "qwen2"
    assert info.details is not None and info.details.family == "qwen2"


def test_generate(client: ollama.Client) -> None:
    r = client.generate(model=MODEL, prompt="Say OK.", options=greedy(8))
    assert r.done and r.response.strip() and r.eval_count and r.eval_count <= 8
    parts = list(client.generate(model=MODEL, prompt="Say OK.", options=greedy(8), stream=True))
    assert "".join(p.response for p in parts) == r.response
    assert parts[-1].done_reason in ("stop", "length")


def test_chat_streamed(client: ollama.Client) -> None:
    parts = list(client.chat(model=MODEL, messages=[{"role": "user", "content": "Hi!"}],
                             options=greedy(10), stream=True))
    assert parts[-1].done and parts[-1].message.role == "assistant"
    assert "".join(p.message.content or "" for p in parts).strip()


def test_ps_and_errors(client: ollama.Client) -> None:
    client.generate(model=MODEL, prompt="", keep_alive="1m")
    assert any(m.model == MODEL for m in client.ps().models)
    with pytest.raises(ollama.ResponseError) as err:
        client.generate(model="missing:7b", prompt="x")
    assert err.value.status_code == 404


async def _achat(host: str) -> str:
    c = ollama.AsyncClient(host=host)
    out = []
    async for part in await c.chat(model=MODEL, messages=[{"role": "user", "content": "Hi"}],
                                   options=greedy(6), stream=True):
        out.append(part.message.content or "")
    return "".join(out)


def test_async_client(pulled: Server) -> None:
    import asyncio

    assert asyncio.run(_achat(pulled.url)).strip()


async def _async_tour(host: str) -> None:
    c = ollama.AsyncClient(host=host)
    assert MODEL in [m.model for m in (await c.list()).models]
    assert (await c.show(MODEL)).modelinfo
    r = await c.generate(model=MODEL, prompt="Say OK.", options=greedy(6))
    assert r.response
    parts = [p async for p in await c.generate(model=MODEL, prompt="Say OK.", options=greedy(6),
                                               stream=True)]
    assert "".join(p.response for p in parts) == r.response
    chat = await c.chat(model=MODEL, messages=[{"role": "user", "content": "Hi"}], options=greedy(6))
    assert chat.message.role == "assistant"
    emb = await c.embed(model=MODEL, input="hello")
    assert len(emb.embeddings[0]) == 896
    assert (await c.ps()).models
    await c.copy(MODEL, "async-copy:1")
    await c.delete("async-copy:1")
    pulls = [p async for p in await c.pull(MODEL, stream=True)]
    assert pulls[-1].status == "success"


def test_async_client_methods(pulled: Server) -> None:
    import asyncio

    asyncio.run(_async_tour(pulled.url))
