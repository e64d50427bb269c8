"""Every ROOST_* setting in one table, read from the environment on each call.

Accessors read the environment every time (no import-time snapshot), so tests can set a
variable and a server started later sees it. `roost serve --help` prints `SETTINGS`.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

DEFAULT_PORT = 11434


@dataclass(frozen=True)
class Setting:
    name: str
    default: str
    description: str

    def get(self) -> str:
        value = os.environ.get(self.name, "").strip()
        return value or self.default


HOST = Setting("ROOST_HOST", f"127.0.0.1:{DEFAULT_PORT}", "Address the server binds and clients call")
HOME = Setting("ROOST_HOME", "~/.roost", "Model store, logs and database")
KEEP_ALIVE = Setting("ROOST_KEEP_ALIVE", "5m", "How long an idle model stays loaded")
NUM_PARALLEL = Setting("ROOST_NUM_PARALLEL", "4", "Sequences decoded together per loaded model")
MAX_LOADED = Setting("ROOST_MAX_LOADED_MODELS", "3", "Most models loaded at once")
MAX_QUEUE = Setting("ROOST_MAX_QUEUE", "512", "Requests waiting before the server answers 503")
CONTEXT_LENGTH = Setting("ROOST_CONTEXT_LENGTH", "4096", "Default context per sequence (num_ctx)")
NUM_THREADS = Setting("ROOST_NUM_THREADS", "0", "CPU threads per runner (0: one per core)")
ORIGINS = Setting("ROOST_ORIGINS", "", "Extra allowed CORS origins, comma-separated")
EDITOR = Setting("ROOST_EDITOR", "", "Editor for the chat shell's Ctrl+G")
NOHISTORY = Setting("ROOST_NOHISTORY", "", "Do not keep the chat shell's history")
API_KEY = Setting("ROOST_API_KEY", "", "Require 'Authorization: Bearer KEY' on every route but /, the chat "
                  "page's files (/web/...) and /api/version (or put the key in "
                  "ROOST_HOME/api_key, mode 0600)")
ALLOW_UNAUTHENTICATED = Setting("ROOST_ALLOW_UNAUTHENTICATED", "",
                                "Set to 1 to serve a non-loopback address without an API key")
ALLOWED_HOSTS = Setting("ROOST_ALLOWED_HOSTS", "", "Extra Host names accepted on a loopback bind "
                        "(name or .suffix, comma-separated; .local and .internal only if listed)")
LOAD_TIMEOUT = Setting("ROOST_LOAD_TIMEOUT", "5m", "How long a model may take to load before its "
                       "runner is stopped")
CPU_KERNELS = Setting("ROOST_CPU_KERNELS", "auto", "CPU buffer types for weights: auto (fall back "
                      "if the runner faults while loading, and remember), all, no-amx, none")
DRAIN_TIMEOUT = Setting("ROOST_DRAIN_TIMEOUT", "10s", "On SIGTERM or Ctrl+C, how long answers in "
                        "flight may run before they end with an error frame (a stream) or a 503, "
                        "and the server exits")
WEBSEARCH_URL = Setting("ROOST_WEBSEARCH_URL", "", "Search endpoint for `roost run --experimental-websearch`"
                        ", e.g. http://127.0.0.1:8080/search?q={query}")
REGISTRY = Setting("ROOST_REGISTRY", "https://registry.ollama.ai", "Base URL of the registry that "
                   "names on the default host (NAME:TAG, NS/NAME:TAG, registry.ollama.ai/...) "
                   "are pulled from when the catalog lacks them")
CATALOG_SOURCE = Setting("ROOST_CATALOG_SOURCE", "auto", "Where a pull of a catalog model reads its "
                         "weights: auto (the installed packages, else the model's Hugging Face repo), "
                         "packages, hf")

SETTINGS: tuple[Setting, ...] = (
    HOST, HOME, KEEP_ALIVE, NUM_PARALLEL, MAX_LOADED, MAX_QUEUE,
    CONTEXT_LENGTH, NUM_THREADS, ORIGINS, EDITOR, NOHISTORY,
    API_KEY, ALLOW_UNAUTHENTICATED, ALLOWED_HOSTS, CPU_KERNELS, LOAD_TIMEOUT, DRAIN_TIMEOUT,
    WEBSEARCH_URL, REGISTRY, CATALOG_SOURCE,
)
KEY_FILE = "api_key"


def home() -> Path:
    return Path(HOME.get()).expanduser()


class ConfigError(ValueError):
    """A ROOST_* setting whose value cannot be used; the message names it and its value."""


_HOSTNAME = re.compile(r"^[A-Za-z0-9_]([A-Za-z0-9_.-]*[A-Za-z0-9_])?$")
_HOST_FORM = "expected [scheme://]host[:port] with a port from 1 to 65535, e.g. 127.0.0.1:11434"


def host_port() -> tuple[str, int]:
    """Parse ROOST_HOST the way Ollama parses OLLAMA_HOST: [scheme://]host[:port][/path].

    Any value that cannot be an address raises ConfigError at once, so the user reads what is
    wrong with the setting instead of a traceback from a socket call or an int() deep inside.
    """
    value = HOST.get()

    def bad(why: str) -> ConfigError:
        return ConfigError(f"ROOST_HOST={value!r} is not a valid address ({why}); {_HOST_FORM}")

    raw, scheme = value, "http"
    if "://" in raw:
        scheme, raw = raw.split("://", 1)
        scheme = scheme.lower()
        if scheme not in ("http", "https"):
            raise bad(f"scheme {scheme!r} is not http or https")
    raw = raw.split("/", 1)[0]
    default_port = (80 if scheme == "http" else 443) if "://" in value else DEFAULT_PORT
    if raw.startswith("["):  # [::1]:port
        host, closed, rest = raw[1:].partition("]")
        if not closed:
            raise bad("'[' without a closing ']'")
        if rest and not rest.startswith(":"):
            raise bad(f"unexpected {rest!r} after ']'")
        _check_ipv6(host, bad)
        return host, _port(rest[1:], default_port, bad)
    if raw.count(":") > 1:  # a bare IPv6 literal such as ::1 carries no port
        _check_ipv6(raw, bad)
        return raw, default_port
    host, _, port_text = raw.partition(":")
    if host and not _HOSTNAME.match(host):
        raise bad(f"{host!r} is not a host name or IP address")
    return host or "127.0.0.1", _port(port_text, default_port, bad)


def _check_ipv6(host: str, bad: Callable[[str], ConfigError]) -> None:
    try:
        ipaddress.IPv6Address(host)
    except ValueError:
        raise bad(f"{host!r} is not an IPv6 address") from None


def _port(text: str, default: int, bad: Callable[[str], ConfigError]) -> int:
    if not text:
        return default
    if not text.isascii() or not text.isdigit():
        raise bad(f"port {text!r} is not a number")
    if not 1 <= int(text) <= 65535:
        raise bad(f"port {text} is out of range")
    return int(text)


def base_url() -> str:
    """The URL a client uses; a wildcard bind address is reached through loopback."""
    host, port = host_port()
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


def keep_alive_default() -> str:
    return KEEP_ALIVE.get()


def _int(setting: Setting) -> int:
    try:
        return int(setting.get())
    except ValueError:
        return int(setting.default)


def num_parallel() -> int:
    return max(1, _int(NUM_PARALLEL))


def max_loaded_models() -> int:
    return max(1, _int(MAX_LOADED))


def max_queue() -> int:
    return max(1, _int(MAX_QUEUE))


def context_length() -> int:
    return max(256, _int(CONTEXT_LENGTH))


def num_threads() -> int:
    n = _int(NUM_THREADS)
    return n if n > 0 else (os.cpu_count() or 1)


def origins() -> list[str]:
    return [o.strip() for o in ORIGINS.get().split(",") if o.strip()]


def allowed_hosts() -> list[str]:
    return [h.strip() for h in ALLOWED_HOSTS.get().split(",") if h.strip()]


def api_key(root: Path | None = None) -> str | None:
    """ROOST_API_KEY, else the first line of ROOST_HOME/api_key; None when neither is set."""
    key = API_KEY.get()
    if key:
        return key
    try:
        lines = ((root or home()) / KEY_FILE).read_text().splitlines()
    except OSError:
        return None
    return lines[0].strip() or None if lines else None


def allow_unauthenticated() -> bool:
    return ALLOW_UNAUTHENTICATED.get().lower() in ("1", "true", "yes")


def load_timeout() -> float:
    from roost.durations import parse_duration

    try:
        seconds = parse_duration(LOAD_TIMEOUT.get())
    except ValueError:
        seconds = parse_duration(LOAD_TIMEOUT.default)
    return seconds if seconds > 0 else parse_duration(LOAD_TIMEOUT.default)


def drain_timeout() -> float:
    """Seconds a SIGTERM'd server lets streams in flight finish (0: end them at once)."""
    from roost.durations import parse_duration

    try:
        seconds = parse_duration(DRAIN_TIMEOUT.get())
    except ValueError:
        seconds = parse_duration(DRAIN_TIMEOUT.default)
    return max(seconds, 0.0)


def registry() -> str:
    """ROOST_REGISTRY without a trailing slash (a scheme is added when none is given)."""
    url = REGISTRY.get().rstrip("/")
    return url if "://" in url else f"https://{url}"
