"""A child process that writes threads and messages through roost.threads.store until killed.

`python -m tests.support.store_faults_writer DB SEED` prints `ready`, then for each write a
`try ...` line before the store's call and an `ok ...` line after it returned, each flushed at
once: `ok` is the acknowledgement. The test that kills this process with SIGKILL checks that
every acknowledged write is in the database, and that the one write in flight (a `try` with
no `ok`) is there whole or not at all. Lines:

    try thread                       ok thread THREAD
    try message THREAD SHA           ok message THREAD MESSAGE SHA
    try edit THREAD MESSAGE SHA      ok edit THREAD MESSAGE SHA

SHA is the sha256 of the message's content. Sizes vary from a few bytes to 24 KB so that
transactions span pages and the WAL fills and is checkpointed while the kills fall. It
imports only the store, to start fast.
"""

from __future__ import annotations

import hashlib
import random
import sys
from pathlib import Path

from roost.threads.store import Store


def content(rng: random.Random) -> str:
    return "".join(rng.choice("abcdefghij \n") for _ in range(rng.choice((8, 200, 4000, 24000))))


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def main(db: Path, seed: int) -> None:
    rng = random.Random(seed)
    store = Store(db)
    say("ready")
    threads: list[tuple[str, list[str]]] = []
    while True:
        if not threads or rng.random() < 0.1:
            say("try thread")
            thread = store.create_thread(title=f"t{len(threads)}", model="qwen2.5-coder:0.5b")
            threads.append((thread.id, []))
            say(f"ok thread {thread.id}")
        thread_id, messages = rng.choice(threads)
        text = content(rng)
        if messages and rng.random() < 0.2:
            message_id = rng.choice(messages)
            say(f"try edit {thread_id} {message_id} {sha(text)}")
            store.update_message(thread_id, message_id, content=text)
            say(f"ok edit {thread_id} {message_id} {sha(text)}")
        else:
            say(f"try message {thread_id} {sha(text)}")
            msg = store.add_message(thread_id, rng.choice(("user", "assistant")), text)
            messages.append(msg.id)
            say(f"ok message {thread_id} {msg.id} {sha(text)}")


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


if __name__ == "__main__":
    main(Path(sys.argv[1]), int(sys.argv[2]))
