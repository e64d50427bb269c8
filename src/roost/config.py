"""Every ROOST_* setting in one table, read from the environment on each call.

Accessors read the environment every time (no import-time snapshot), so tests can set a
variable and a server started later sees it. `roost serve --help` prints `SETTINGS`.
"""

from __future__ import annotations

import os
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

SETTINGS: tuple[Setting, ...] = (
    HOST, HOME, KEEP_ALIVE, NUM_PARALLEL, MAX_LOADED, MAX_QUEUE,
    CONTEXT_LENGTH, NUM_THREADS, ORIGINS, EDITOR, NOHISTORY,
)


def home() -> Path:
    return Path(HOME.get()).expanduser()


def host_port() -> tuple[str, int]:
    """Parse ROOST_HOST the way Ollama parses OLLAMA_HOST: [scheme://]host[:port][/path]."""
    raw = HOST.get()
    scheme = ""
    if "://" in raw:
        scheme, raw = raw.split("://", 1)
    raw = raw.split("/", 1)[0]
    default_port = {"http": 80, "https": 443}.get(scheme, DEFAULT_PORT)
    if raw.startswith("["):  # [::1]:port
        host, _, rest = raw[1:].partition("]")
        port = int(rest[1:]) if rest.startswith(":") and rest[1:] else default_port
        return host, port
    host, sep, port_text = raw.rpartition(":")
    if not sep:
        return raw or "127.0.0.1", default_port
    return host or "127.0.0.1", int(port_text) if port_text else default_port


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
