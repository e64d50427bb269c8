"""Test support: a real server whose runner is the scripted fake (tests/support/fake_runner.py).

The fake answers for tool calls and thinking only, what the bundled 0.5B model cannot show
reliably. The server, the store, template rendering, output parsing and the CLI stay real.
This package's top level imports nothing heavy: the fake runner is spawned as
`python -m tests.support.fake_runner`, which imports this file first.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tests.conftest import Server

REPO = Path(__file__).resolve().parents[2]
TOOLS_MODEL = "fake-coder"  # FROM qwen2.5-coder:0.5b: its template offers tools
THINKING_MODEL = "fake-thinker"  # a GGUF whose own chat template thinks, as Qwen3's does

# What a thinking model's GGUF carries (Qwen3's shape, cut down): `<think>` in the template is
# what makes config_blob list "thinking"; a level (`think: "low"`) goes into the prompt the
# way gpt-oss templates put "Reasoning: low" there, so a test can see that it arrived.
THINKING_TEMPLATE = """
{%- if think is defined and think is string %}<|im_start|>system
Reasoning: {{ think }}<|im_end|>
{% endif %}
{%- for m in messages %}<|im_start|>{{ m['role'] }}
{{ m['content'] }}<|im_end|>
{% endfor %}
{%- if add_generation_prompt %}<|im_start|>assistant
{% if enable_thinking is defined and enable_thinking is false %}<think>

</think>

{% endif %}{% endif %}"""


def tool_call(name: str, **arguments: Any) -> str:
    """A tool call as Qwen models write it, which the server's output parser turns into tool_calls."""
    return "<tool_call>\n" + json.dumps({"name": name, "arguments": arguments}) + "\n</tool_call>"


def tool_results(prompt: str) -> list[str]:
    """The tool results a prompt shows the model (Qwen's template wraps each in <tool_response>)."""
    return [part.split("</tool_response>")[0].strip() for part in prompt.split("<tool_response>")[1:]]


@contextlib.contextmanager
def search_server(answer: Any) -> Iterator[tuple[str, list[str]]]:
    """A tiny search endpoint on 127.0.0.1 (never another address) that answers `answer` as
    JSON; yields its base URL and the list of paths it was asked for."""
    import http.server
    import threading

    seen: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            seen.append(self.path)
            body = json.dumps(answer, indent=2).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", seen
    finally:
        httpd.shutdown()
        httpd.server_close()


@dataclass
class FakeServer:
    server: Server
    script_path: Path

    def script(self, rules: list[tuple[str, list[str]]] | None = None,
               answers: list[list[str]] | None = None) -> Path:
        """Write a new script (see fake_runner's docstring); returns the log of prompts it will see."""
        log = self.script_path.with_name(f"prompts-{os.urandom(4).hex()}.jsonl")
        body = {"rules": [{"match": m, "answer": a} for m, a in rules or []],
                "answers": answers or [], "log": str(log)}
        self.script_path.write_text(json.dumps(body, indent=1))
        return log

    @staticmethod
    def prompts(log: Path) -> list[str]:
        if not log.exists():
            return []
        return [json.loads(line) for line in log.read_text().splitlines() if line]


def write_thinking_gguf(path: Path) -> Path:
    """A GGUF with metadata only: the fake runner never reads weights, the store only metadata."""
    import gguf

    writer = gguf.GGUFWriter(str(path), "qwen3")
    writer.add_chat_template(THINKING_TEMPLATE)
    writer.add_context_length(4096)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def start_fake_server(home: Path) -> FakeServer:
    """A real `roost serve` on the fake runner, with TOOLS_MODEL and THINKING_MODEL created."""
    import hashlib

    from tests.conftest import MODEL, start_server

    script = home / "fake-script.json"
    home.mkdir(parents=True, exist_ok=True)
    script.write_text("{}")
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    server = start_server(home, {"ROOST_TEST_RUNNER_MODULE": "tests.support.fake_runner",
                                 "ROOST_FAKE_SCRIPT": str(script), "PYTHONPATH": path})
    try:
        with server.client() as c:
            r = c.post("/api/pull", json={"model": MODEL, "stream": False})
            assert r.status_code == 200, r.text
            r = c.post("/api/create", json={"model": TOOLS_MODEL, "from": MODEL, "stream": False})
            assert r.status_code == 200, r.text
            data = write_thinking_gguf(home / "thinker.gguf").read_bytes()
            digest = "sha256:" + hashlib.sha256(data).hexdigest()
            assert c.post(f"/api/blobs/{digest}", content=data).status_code in (200, 201)
            r = c.post("/api/create", json={"model": THINKING_MODEL, "files": {"thinker.gguf": digest},
                                            "stream": False})
            assert r.status_code == 200, r.text
            caps = c.post("/api/show", json={"model": THINKING_MODEL}).json()["capabilities"]
            assert "thinking" in caps, caps
    except BaseException:
        from tests.conftest import stop_server

        stop_server(server)
        raise
    return FakeServer(server, script)
