"""Tests only: a FAKE llama_decode failure, injected by `ROOST_TEST_FAULT_DECODE`.

A real decode failure (the KV cache out of cells, return code 1) cannot be provoked reliably
with a small model on a small machine, yet the batcher's recovery from one must be tested.
With this variable set in the server's environment, the runner's batcher treats chosen
`llama_decode` calls as if llama.cpp had returned 1, without calling it (so nothing reaches
the KV cache, as with a real failure, which llama.cpp rolls back). Nothing else sets it.

The value is a comma-separated list of rules; a call fails if any rule matches:

    over:N   a batch of more than N tokens          (a cache too full for a big batch)
    pos:N    a batch holding a position >= N        (one long sequence out of room)
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

ENV = "ROOST_TEST_FAULT_DECODE"


@dataclass
class DecodeFault:
    over: int | None = None
    pos: int | None = None
    count: int = 0  # decode calls seen so far

    @classmethod
    def from_env(cls) -> DecodeFault | None:
        spec = os.environ.get(ENV, "").strip()
        if not spec:
            return None
        fault = cls()
        for rule in spec.split(","):
            kind, _, value = rule.strip().partition(":")
            if kind == "over":
                fault.over = int(value)
            elif kind == "pos":
                fault.pos = int(value)
            else:
                raise ValueError(f"{ENV}: unknown rule {rule!r}")
        return fault

    def fails(self, n_tokens: int, max_pos: int) -> bool:
        """Count this call; say whether it is to fail."""
        self.count += 1
        fails = ((self.over is not None and n_tokens > self.over)
                 or (self.pos is not None and max_pos >= self.pos))
        if fails:  # in the server's log, so a test can tell its faults did happen
            print(f"{ENV}: failing decode call {self.count} ({n_tokens} tokens, "
                  f"up to position {max_pos})", file=sys.stderr, flush=True)
        return fails
