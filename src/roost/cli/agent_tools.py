"""The agent loop's built-in tools: their schemas for the model and their bounded execution.

Every tool reads; none writes by itself (a shell command the user approved may, which is why
each call is approved first, in roost.cli.agent). Each result is text for the model, cut to
LIMIT bytes with a note saying so, so one `cat` of a large file cannot flood the context.
Errors are results too ("error: ..."): the model reads them and may try something else.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import stat
import subprocess
import time
from pathlib import Path
from typing import Any

from roost import config

LIMIT = 16 * 1024  # bytes of output, file or listing given back to the model
SHELL_TIMEOUT = 60.0
SEARCH_TIMEOUT = 15.0
MAX_ENTRIES = 500
SEARCH_HELP = "set ROOST_WEBSEARCH_URL to an http(s) URL, e.g. http://127.0.0.1:8080/search?q={query}"


def _schema(name: str, description: str, **params: str) -> dict[str, Any]:
    """One tool in the OpenAI function form that /api/chat's `tools` takes."""
    props = {k: {"type": "string", "description": v} for k, v in params.items()}
    return {"type": "function", "function": {
        "name": name, "description": description,
        "parameters": {"type": "object", "properties": props, "required": list(params)}}}


SCHEMAS = {
    "run_shell": _schema("run_shell", "Run a shell command (sh -c) in the current directory and "
                         "return its output and exit code.", command="The command line to run."),
    "read_file": _schema("read_file", "Read a text file.", path="The file's path."),
    "list_dir": _schema("list_dir", "List a directory's entries (folders end with /).",
                        path="The directory's path; '.' for the current one."),
    "web_search": _schema("web_search", "Search the web and return the results.",
                          query="What to search for."),
}


def schemas(websearch: bool) -> list[dict[str, Any]]:
    return [s for name, s in SCHEMAS.items() if websearch or name != "web_search"]


def check(name: str, args: dict[str, Any], websearch: bool) -> str | None:
    """Why this call cannot run at all (no need to ask the user about it), or None."""
    if name not in SCHEMAS or (name == "web_search" and not websearch):
        return f"error: there is no tool named {name!r}"
    param = next(iter(SCHEMAS[name]["function"]["parameters"]["properties"]))
    if not isinstance(args.get(param), str) or not args[param].strip():
        return f"error: {name} needs a string argument {param!r}"
    return None


def run(name: str, args: dict[str, Any]) -> str:
    """Run a checked call; the text that goes back to the model."""
    if name == "run_shell":
        return run_shell(args["command"])
    if name == "read_file":
        return read_file(args["path"])
    if name == "list_dir":
        return list_dir(args["path"])
    return web_search(args["query"])


def _cut(data: bytes, total: int | None = None) -> str:
    """The first LIMIT bytes as text, saying so when there was more (`total`, where known)."""
    text = data[:LIMIT].decode("utf-8", errors="replace")
    if len(data) > LIMIT or (total or 0) > LIMIT:
        of = f" of {total}" if total and total > LIMIT else ""
        text = _note(text, f"[cut: showing the first {LIMIT}{of} bytes]")
    return text


def _note(text: str, note: str) -> str:
    return text + ("" if text.endswith("\n") or not text else "\n") + note


def run_shell(command: str, timeout: float = SHELL_TIMEOUT) -> str:
    """Output (stdout and stderr together) kept up to LIMIT, the rest read and dropped, so a
    chatty command neither fills memory nor blocks; its own session, so the whole group dies
    on timeout or Ctrl+C."""
    proc = subprocess.Popen(["/bin/sh", "-c", command], stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    assert proc.stdout is not None
    kept, total, timed_out = bytearray(), 0, False
    deadline = time.monotonic() + timeout
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                timed_out = True
                break
            if not select.select([proc.stdout], [], [], left)[0]:
                continue
            chunk = os.read(proc.stdout.fileno(), 65536)
            if not chunk:
                break
            total += len(chunk)
            kept += chunk[: max(0, LIMIT - len(kept))]
        code = proc.wait(timeout=max(0.1, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        timed_out = True
    finally:
        if timed_out or proc.poll() is None:  # the shell, and whatever it started, in its group
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
    text = _cut(bytes(kept), total)
    if timed_out:
        return _note(text, f"[timed out after {timeout:g} s; the command was killed]")
    return _note(text, f"[exit code {code}]") if code else (text or "(no output)")


def read_file(path: str) -> str:
    file = Path(path).expanduser()
    try:
        info = file.stat()
        if not stat.S_ISREG(info.st_mode):  # a FIFO or a device could block or never end
            return f"error: {path} is not a regular file"
        with file.open("rb") as f:
            data = f.read(LIMIT + 1)
    except OSError as exc:
        return f"error: cannot read {path}: {exc.strerror or exc}"
    if b"\0" in data:
        return f"error: {path} is a binary file ({info.st_size} bytes)"
    return _cut(data, info.st_size)


def list_dir(path: str) -> str:
    try:
        entries = sorted(os.scandir(Path(path).expanduser()), key=lambda e: e.name)
    except OSError as exc:
        return f"error: cannot list {path}: {exc.strerror or exc}"
    names = [e.name + ("/" if e.is_dir() else "") for e in entries[:MAX_ENTRIES]]
    more = len(entries) - len(names)
    text = "\n".join(names) if names else "(empty)"
    return _cut(text.encode()) + (f"\n[and {more} more entries]" if more else "")


def search_url(query: str) -> str | None:
    """ROOST_WEBSEARCH_URL with the query put in for `{query}` (else appended as `q=`); None
    unless it is an http(s) URL, so the setting cannot make the tool read file:// paths."""
    from urllib.parse import quote_plus

    url = config.WEBSEARCH_URL.get()
    if not url.startswith(("http://", "https://")):
        return None
    if "{query}" in url:
        return url.replace("{query}", quote_plus(query))
    return url + ("&" if "?" in url else "?") + "q=" + quote_plus(query)


def web_search(query: str) -> str:
    import urllib.error
    import urllib.request

    url = search_url(query)
    if url is None:
        return f"error: web search is not set up: {SEARCH_HELP}"
    try:
        req = urllib.request.Request(url, headers={"User-Agent": "roost-cli",
                                                   "Accept": "application/json, text/plain"})
        with urllib.request.urlopen(req, timeout=SEARCH_TIMEOUT) as resp:
            data = resp.read(LIMIT + 1)
            length = resp.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        return f"error: the web search failed: {getattr(exc, 'reason', exc)}"
    if len(data) <= LIMIT:  # whole: JSON is compacted, so the bound holds more results
        with contextlib.suppress(ValueError):
            data = json.dumps(json.loads(data), ensure_ascii=False).encode()
        total = len(data)
    return _cut(data, total)
