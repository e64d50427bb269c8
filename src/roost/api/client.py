"""The typed HTTP client for Roost's API: what the CLI, the tests and users' scripts call.

Streaming methods return iterators of plain dicts (one per NDJSON line) so that printing a
token costs no validation; an `{"error": ...}` line or a status >= 400 raises
ResponseError, as Ollama's own client does.
"""

from __future__ import annotations

import builtins
import json
import os
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from roost import config

if TYPE_CHECKING:
    import httpx2


_UPLOAD_CHUNK = 1 << 20


class ResponseError(Exception):
    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


class ConnectError(Exception):
    """No server answered at the address."""


class Client:
    def __init__(self, base_url: str | None = None, timeout: float | None = None,
                 api_key: str | None = None) -> None:
        """`api_key` defaults to ROOST_API_KEY, else the key file under ROOST_HOME."""
        import httpx2 as httpx  # deferred: `roost --help` must not pay for it

        self.base_url = base_url or config.base_url()
        headers = {"User-Agent": "roost-cli"}
        key = config.api_key() if api_key is None else api_key
        if key:
            headers["Authorization"] = f"Bearer {key}"
        self._http = httpx.Client(
            base_url=self.base_url,
            timeout=httpx.Timeout(timeout, connect=5.0),
            headers=headers,
        )
        self._httpx = httpx

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- transport -----------------------------------------------------------------------

    def _request(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        try:
            resp = self._http.request(method, path, json=body)
        except self._httpx.TransportError as exc:
            raise ConnectError(f"could not connect to the Roost server at {self.base_url}") from exc
        _raise_for_status(resp)
        return resp.json() if resp.content else {}

    def _stream(self, path: str, body: dict[str, Any]) -> Iterator[dict[str, Any]]:
        try:
            with self._http.stream("POST", path, json=body) as resp:
                if resp.status_code >= 400:
                    resp.read()
                    _raise_for_status(resp)
                for line in resp.iter_lines():
                    if not line:
                        continue
                    part = json.loads(line)
                    if "error" in part:
                        raise ResponseError(part["error"], resp.status_code)
                    yield part
        except self._httpx.TransportError as exc:
            raise ConnectError(f"lost the connection to the Roost server at {self.base_url}") from exc

    # -- API -----------------------------------------------------------------------------

    def version(self) -> dict[str, Any]:
        return self._request("GET", "/api/version")  # type: ignore[no-any-return]

    def generate(self, model: str, prompt: str = "", **fields: Any) -> Iterator[dict[str, Any]]:
        return self._stream("/api/generate", {"model": model, "prompt": prompt, "stream": True,
                                              **_clean(fields)})

    def chat(self, model: str, messages: list[dict[str, Any]],
             **fields: Any) -> Iterator[dict[str, Any]]:
        return self._stream("/api/chat", {"model": model, "messages": messages, "stream": True,
                                          **_clean(fields)})

    def load(self, model: str, keep_alive: Any = None) -> dict[str, Any]:
        body = _clean({"model": model, "prompt": "", "stream": False, "keep_alive": keep_alive})
        return self._request("POST", "/api/generate", body)  # type: ignore[no-any-return]

    def unload(self, model: str) -> dict[str, Any]:
        body = {"model": model, "prompt": "", "stream": False, "keep_alive": 0}
        return self._request("POST", "/api/generate", body)  # type: ignore[no-any-return]

    def embed(self, model: str, input: str | builtins.list[str], **fields: Any) -> builtins.list[Any]:
        body = {"model": model, "input": input, **_clean(fields)}
        return builtins.list(self._request("POST", "/api/embed", body)["embeddings"])

    def create(self, model: str, **fields: Any) -> dict[str, Any]:
        body = {"model": model, "stream": False, **_clean(fields)}
        return self._request("POST", "/api/create", body)  # type: ignore[no-any-return]

    def create_progress(self, model: str, **fields: Any) -> Iterator[dict[str, Any]]:
        """/api/create, streamed: Ollama's status lines ("parsing GGUF", ..., "success")."""
        return self._stream("/api/create", {"model": model, "stream": True, **_clean(fields)})

    def has_blob(self, digest: str) -> bool:
        """Whether the server holds the blob (HEAD /api/blobs/<digest>)."""
        try:
            resp = self._http.head(f"/api/blobs/{_quote(digest)}")
        except self._httpx.TransportError as exc:
            raise ConnectError(f"could not connect to the Roost server at {self.base_url}") from exc
        if resp.status_code == 404:
            return False
        _raise_for_status(resp)
        return True

    def upload_blob(self, digest: str, path: str | os.PathLike[str],
                    progress: Callable[[int], None] | None = None) -> None:
        """Send a file as the blob `digest`; the server verifies the digest before keeping it.
        `progress` is called with the bytes sent so far."""
        def chunks() -> Iterator[bytes]:
            sent = 0
            with open(path, "rb") as f:
                while chunk := f.read(_UPLOAD_CHUNK):
                    sent += len(chunk)
                    yield chunk
                    if progress is not None:
                        progress(sent)

        try:
            resp = self._http.post(f"/api/blobs/{_quote(digest)}", content=chunks())
        except self._httpx.TransportError as exc:
            raise ConnectError(f"lost the connection to the Roost server at {self.base_url}") from exc
        _raise_for_status(resp)

    def link_blob(self, digest: str, path: str) -> dict[str, Any]:
        """Roost's import without copying: the server links its own file at `path` (absolute)
        as the blob `digest`. The answer's `link` says how: hardlink, path or existing."""
        return self._request("POST", f"/api/blobs/{_quote(digest)}/link", {"path": path})  # type: ignore[no-any-return]

    def pull(self, model: str, insecure: bool = False) -> Iterator[dict[str, Any]]:
        return self._stream("/api/pull", {"model": model, "stream": True, "insecure": insecure})

    def push(self, model: str, insecure: bool = False) -> Iterator[dict[str, Any]]:
        return self._stream("/api/push", {"model": model, "stream": True, "insecure": insecure})

    def copy(self, source: str, destination: str) -> None:
        self._request("POST", "/api/copy", {"source": source, "destination": destination})

    def list(self) -> builtins.list[dict[str, Any]]:
        return builtins.list(self._request("GET", "/api/tags")["models"])

    def show(self, model: str, verbose: bool = False) -> dict[str, Any]:
        body = {"model": model, **({"verbose": True} if verbose else {})}
        return self._request("POST", "/api/show", body)  # type: ignore[no-any-return]

    def ps(self) -> builtins.list[dict[str, Any]]:
        return builtins.list(self._request("GET", "/api/ps")["models"])

    def delete(self, model: str) -> None:
        self._request("DELETE", "/api/delete", {"model": model})

    # -- threads (Cortex's API) ------------------------------------------------------------

    def create_thread(self, title: str = "", model: str = "") -> dict[str, Any]:
        return self._request("POST", "/v1/threads", {"title": title, "model": model})  # type: ignore[no-any-return]

    def thread(self, thread_id: str) -> dict[str, Any]:
        return self._request("GET", f"/v1/threads/{_quote(thread_id)}")  # type: ignore[no-any-return]

    def threads(self) -> builtins.list[dict[str, Any]]:
        return self._all("/v1/threads")

    def update_thread(self, thread_id: str, **fields: Any) -> dict[str, Any]:
        return self._request("PATCH", f"/v1/threads/{_quote(thread_id)}", _clean(fields))  # type: ignore[no-any-return]

    def delete_thread(self, thread_id: str) -> None:
        self._request("DELETE", f"/v1/threads/{_quote(thread_id)}")

    def messages(self, thread_id: str) -> builtins.list[dict[str, Any]]:
        """Every message of a thread, oldest first."""
        return self._all(f"/v1/threads/{_quote(thread_id)}/messages")

    def add_message(self, thread_id: str, role: str, content: str,
                    status: str = "completed") -> dict[str, Any]:
        body = {"role": role, "content": content, "status": status}
        return self._request("POST", f"/v1/threads/{_quote(thread_id)}/messages", body)  # type: ignore[no-any-return]

    # -- engines and configs (Cortex's API) -------------------------------------------------

    def engines(self) -> builtins.list[dict[str, Any]]:
        return builtins.list(self._request("GET", "/v1/engines")["data"])

    def add_engine(self, name: str, url: str, api_key: str = "") -> dict[str, Any]:
        body = {"name": name, "url": url, "api_key": api_key}
        return self._request("POST", "/v1/engines", body)  # type: ignore[no-any-return]

    def delete_engine(self, name: str) -> None:
        self._request("DELETE", f"/v1/engines/{_quote(name)}")

    def configs(self) -> dict[str, str]:
        return self._request("GET", "/v1/configs")  # type: ignore[no-any-return]

    def set_config(self, key: str, value: str) -> dict[str, str]:
        return self._request("PATCH", "/v1/configs", {key: value})  # type: ignore[no-any-return]

    # -- presets ----------------------------------------------------------------------------

    def presets(self) -> builtins.list[dict[str, Any]]:
        return builtins.list(self._request("GET", "/v1/presets")["data"])

    def preset(self, name: str) -> dict[str, Any]:
        return self._request("GET", f"/v1/presets/{_quote(name)}")  # type: ignore[no-any-return]

    def put_preset(self, name: str, system: str, options: dict[str, Any]) -> dict[str, Any]:
        body = {"system": system, "options": options}
        return self._request("PUT", f"/v1/presets/{_quote(name)}", body)  # type: ignore[no-any-return]

    def delete_preset(self, name: str) -> None:
        self._request("DELETE", f"/v1/presets/{_quote(name)}")

    def _all(self, path: str) -> builtins.list[dict[str, Any]]:
        items: builtins.list[dict[str, Any]] = []
        after = ""
        while True:
            page = self._request("GET", f"{path}?order=asc&limit=100" + (f"&after={after}" if after else ""))
            items += page["data"]
            if not page.get("has_more") or not page["data"]:
                return items
            after = page["last_id"]


def _quote(part: str) -> str:
    from urllib.parse import quote

    return quote(part, safe="")


def _clean(fields: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in fields.items() if v is not None}


def _raise_for_status(resp: httpx2.Response) -> None:
    if resp.status_code < 400:
        return
    try:
        body = resp.json()
        error = body.get("error") if isinstance(body, dict) else None
        if isinstance(error, dict):  # OpenAI's shape
            error = error.get("message")
        message = error or (body.get("message") if isinstance(body, dict) else None) or resp.text
    except ValueError:
        message = resp.text or resp.reason_phrase
    raise ResponseError(str(message), resp.status_code)
