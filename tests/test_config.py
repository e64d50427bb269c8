"""ROOST_HOST parsing: the forms Ollama accepts for OLLAMA_HOST, and one clear error otherwise."""

from __future__ import annotations

import pytest

from roost import config


@pytest.mark.parametrize(("value", "expected"), [
    ("", ("127.0.0.1", 11434)),
    ("127.0.0.1:11435", ("127.0.0.1", 11435)),
    ("0.0.0.0", ("0.0.0.0", 11434)),
    (":8080", ("127.0.0.1", 8080)),
    ("localhost:1", ("localhost", 1)),
    ("http://example.com", ("example.com", 80)),
    ("https://example.com/some/path", ("example.com", 443)),
    ("HTTP://host-1.lan:65535/", ("host-1.lan", 65535)),
    ("[::1]:11500", ("::1", 11500)),
    ("http://[::1]", ("::1", 80)),
    ("::1", ("::1", 11434)),
    ("::", ("::", 11434)),
    ("  127.0.0.1:5  ", ("127.0.0.1", 5)),
])
def test_host_port_accepts_ollama_forms(monkeypatch: pytest.MonkeyPatch, value: str,
                                        expected: tuple[str, int]) -> None:
    monkeypatch.setenv("ROOST_HOST", value)
    assert config.host_port() == expected


@pytest.mark.parametrize(("value", "why"), [
    ("foo:bar", "port 'bar' is not a number"),
    ("127.0.0.1:99999", "port 99999 is out of range"),
    ("127.0.0.1:0", "port 0 is out of range"),
    (":-1", "port '-1' is not a number"),
    ("http://[::1", "without a closing ']'"),
    ("[::1]x", "unexpected 'x'"),
    ("[nope]:80", "'nope' is not an IPv6 address"),
    ("1:2:3", "'1:2:3' is not an IPv6 address"),
    ("ftp://host", "scheme 'ftp'"),
    ("my host", "'my host' is not a host name"),
    ("127.0.0.1:１２", "is not a number"),  # fullwidth digits: isdigit() but no port
])
def test_host_port_refuses_garbage_in_one_sentence(monkeypatch: pytest.MonkeyPatch, value: str,
                                                   why: str) -> None:
    monkeypatch.setenv("ROOST_HOST", value)
    with pytest.raises(config.ConfigError) as info:
        config.host_port()
    message = str(info.value)
    assert isinstance(info.value, ValueError)
    assert message.startswith(f"ROOST_HOST={value.strip()!r} ") and why in message
    assert "[scheme://]host[:port]" in message and "1 to 65535" in message and "\n" not in message
    with pytest.raises(config.ConfigError):
        config.base_url()


def test_base_url_reaches_a_wildcard_bind_through_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROOST_HOST", "0.0.0.0:9000")
    assert config.base_url() == "http://127.0.0.1:9000"
    monkeypatch.setenv("ROOST_HOST", "[::1]:9000")
    assert config.base_url() == "http://[::1]:9000"
