"""The runner protocol: newline-delimited JSON messages over one local socket.

Server to runner: `complete {id, prompt, options, format, num_ctx}`, `cancel {id}`,
`tokenize {id, text}`, `embed {id, texts, truncate, dimensions, num_ctx}`.
Runner to server: `ready {n_ctx, n_parallel, size, load_ns}` or `load_error {message}`
once, then `piece {id, text}`, `done {id, reason, counts, timings}`,
`error {id, message, status}`, `tokens {id, tokens}`, `embeddings {id, embeddings,
prompt_tokens}`. Every message after loading carries the request id, so many streams
share the one socket.
"""

from __future__ import annotations

import json
import socket
from typing import Any

Message = dict[str, Any]


def encode(messages: list[Message]) -> bytes:
    return b"".join(json.dumps(m, separators=(",", ":")).encode() + b"\n" for m in messages)


class Connection:
    """The runner's side: a blocking socket, read only when select says it is readable."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._buf = b""

    def send(self, messages: list[Message]) -> None:
        self.sock.sendall(encode(messages))

    def receive(self) -> list[Message] | None:
        data = self.sock.recv(1 << 16)
        if not data:
            return None
        self._buf += data
        *lines, self._buf = self._buf.split(b"\n")
        return [json.loads(line) for line in lines if line]
