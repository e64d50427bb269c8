"""The runner protocol: newline-delimited JSON messages over one local socket.

Server to runner: `complete {id, prompt, options, format, num_ctx, logprobs}`, `cancel {id}`
(of a completion or an embedding batch), `tokenize {id, text, add_special, parse_special,
pieces}`, `detokenize {id, tokens, special}`, `embed {id, texts, truncate, dimensions, num_ctx}`.
Runner to server: `hello {extra_buffer_types, cpu_features}` before loading, `ready {n_ctx,
n_parallel, size, load_ns}` or `load_error {message}` once, then `piece {id, text}`,
`done {id, reason, counts, timings}`, `error {id, message, status}`, `tokens {id, tokens,
pieces?}`, `text {id, text}`, `embeddings {id, embeddings, more, prompt_tokens}`. A batch of
embeddings comes as several `embeddings` messages, in order, each with part of the vectors;
all but the last say `more: true` (a message without `more` is the last), so no message grows
with the batch.
Every message after loading carries the request id, so many streams share the one socket.
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

    def send_raw(self, data: bytes) -> None:
        """Messages already encoded (by a side lane, so the loop does not spend time on it)."""
        self.sock.sendall(data)

    def receive(self) -> list[Message] | None:
        data = self.sock.recv(1 << 16)
        if not data:
            return None
        self._buf += data
        *lines, self._buf = self._buf.split(b"\n")
        return [json.loads(line) for line in lines if line]
