"""Talking to one repository of an Ollama / Docker Registry v2 registry: URLs, auth, errors.

A name on the default host goes to ROOST_REGISTRY (registry.ollama.ai unless set); any other
host is the registry itself, over HTTPS unless `insecure` or a loopback host. A 401 carrying a
Bearer challenge is answered once: a token is fetched from the challenge's realm, but only if
that realm is on the registry's own host and port, so a registry cannot send Roost to fetch
from, or reveal anything to, another host. The token goes in an `Authorization` header, which
httpx drops when a redirect leaves the registry's origin (blob storage on another host).
"""

from __future__ import annotations

import base64
import os
import re
import time
from collections.abc import Iterator
from typing import Any

import httpx2 as httpx

from roost import __version__, config
from roost.models.names import DEFAULT_HOST, Name

_LOOPBACK = ("127.0.0.1", "localhost", "[::1]")
_CHALLENGE_PARAM = re.compile(r'(\w+)="([^"]*)"')


class RegistryError(RuntimeError):
    def __init__(self, message: str, status: int = 500) -> None:
        super().__init__(message)
        self.status = status


class CutOff(RegistryError):
    """The connection broke mid-body; what arrived is kept for a resume."""


def base_url(name: Name, insecure: bool) -> str:
    """`scheme://host[:port]` of the registry that holds `name`."""
    if name.host.lower() == DEFAULT_HOST:
        return config.registry()
    host = name.host.rsplit(":", 1)[0]
    scheme = "http" if insecure or host in _LOOPBACK else "https"
    return f"{scheme}://{name.host}"


class Registry:
    """One repository (`namespace/model`) on one registry, with the token it has been given."""

    def __init__(self, name: Name, insecure: bool) -> None:
        self.base = base_url(name, insecure)
        self.repo = f"{name.namespace}/{name.model}"
        self.http = httpx.Client(timeout=httpx.Timeout(60.0, connect=10.0), follow_redirects=True,
                                 headers={"User-Agent": f"roost/{__version__}"})
        self.token: str | None = None

    def url(self, path: str) -> str:
        return f"{self.base}/v2/{self.repo}/{path}"

    def close(self) -> None:
        self.http.close()

    def send(self, method: str, url: str, *, stream: bool = False,
             headers: dict[str, str] | None = None, **kwargs: Any) -> httpx.Response:
        """One request; a Bearer challenge is answered and the request sent once more."""
        for attempt in (1, 2):
            sent = {**(headers or {})}
            if self.token and _origin(url) == _origin(self.base):  # never to blob storage elsewhere
                sent["Authorization"] = f"Bearer {self.token}"
            request = self.http.build_request(method, url, headers=sent, **kwargs)
            try:
                resp = self.http.send(request, stream=stream)
            except httpx.TransportError as exc:
                raise RegistryError(f"could not reach the registry {self.base}: {exc}", 502) from exc
            challenge = resp.headers.get("www-authenticate", "")
            if resp.status_code != 401 or attempt == 2 or not challenge.lower().startswith("bearer"):
                return resp
            resp.close()
            self.token = self._fetch_token(challenge)
        raise AssertionError("unreachable")

    def _fetch_token(self, challenge: str) -> str:
        params = dict(_CHALLENGE_PARAM.findall(challenge))
        realm = params.get("realm", "")
        _check_realm(realm, self.base)
        query: list[tuple[str, str | int | float | bool | None]] = [("service", params.get("service", ""))]
        query += [("scope", scope) for scope in params.get("scope", "").split()]
        query += [("ts", str(int(time.time()))),
                  ("nonce", base64.urlsafe_b64encode(os.urandom(16)).decode().rstrip("="))]
        try:
            resp = self.http.get(realm, params=query, follow_redirects=False)
        except httpx.TransportError as exc:
            raise RegistryError(f"could not get a token from {realm}: {exc}", 502) from exc
        if resp.status_code >= 400:
            raise RegistryError(f"the registry refused a token ({resp.status_code}: "
                                f"{_body_message(resp)})", 403)
        try:
            doc = resp.json()
            token = doc.get("token") or doc.get("access_token")
        except (ValueError, AttributeError):
            token = None
        if not isinstance(token, str) or not token:
            raise RegistryError(f"the token realm {realm} answered no token", 502)
        return token

    def stream_chunks(self, resp: httpx.Response, size: int = 128 << 10) -> Iterator[bytes]:
        """A response's body in chunks; the response is closed when they end or are dropped."""
        try:
            yield from resp.iter_bytes(size)
        except httpx.TransportError as exc:
            raise CutOff(str(exc) or type(exc).__name__, 502) from exc
        finally:
            resp.close()


def _check_realm(realm: str, base: str) -> None:
    """A token may be fetched only from the registry's own host and port, and never over
    plain HTTP for a registry reached over HTTPS."""
    try:
        want, got = httpx.URL(base), httpx.URL(realm)
    except httpx.InvalidURL:
        raise RegistryError(f"the registry's token realm {realm!r} is not a URL", 502) from None
    if got.scheme not in ("http", "https") or not got.host:
        raise RegistryError(f"the registry's token realm {realm!r} is not an HTTP URL", 502)
    if (got.host, _port(got)) != (want.host, _port(want)):
        raise RegistryError(f"refusing the token realm {realm}: its host {got.netloc.decode()} "
                            f"is not the registry's ({want.netloc.decode()})", 403)
    if want.scheme == "https" and got.scheme != "https":
        raise RegistryError(f"refusing the token realm {realm}: plain HTTP for an HTTPS registry",
                            403)


def _port(url: httpx.URL) -> int:
    return url.port or (443 if url.scheme == "https" else 80)


def check(resp: httpx.Response, repo: str = "") -> None:
    """Raise a RegistryError that says what the registry said, for any status >= 400."""
    if resp.status_code < 400:
        return
    if not resp.is_stream_consumed:
        resp.read()
    message = _body_message(resp)
    if resp.status_code == 401:
        raise RegistryError(f"unauthorized: the registry refused access to {repo or 'the model'} "
                            f"({message})", 403)
    raise RegistryError(f"registry answered {resp.status_code}: {message}",
                        404 if resp.status_code == 404 else 502)


def _body_message(resp: httpx.Response) -> str:
    try:
        errors = resp.json().get("errors") or [{}]
        return str(errors[0].get("message") or resp.text)
    except (ValueError, AttributeError):
        return resp.text.strip()[:200] or resp.reason_phrase


__all__ = ["CutOff", "Registry", "RegistryError", "base_url", "check"]


def _origin(url: str) -> tuple[str, str, int | None]:
    """Scheme, host and port: the token goes only where all three match the registry's."""
    parsed = httpx.URL(url)
    return parsed.scheme, parsed.host, parsed.port
