"""How many prompt tokens one decode step may take, so that a step lasts under a second.

A hang-up or a cancel is read between decode steps: a llama_decode in flight cannot be
interrupted. With fixed chunks of n_batch (512) tokens a step took ~2 s on a 2-core machine
and up to 18 s on a loaded one, so a departed client's prompt ran on that long. The pacer
measures the prefill rate from steps that carried a real prompt chunk and sizes the next
chunk to STEP_SECONDS of it, which keeps every step short on a slow machine and costs a fast
one nothing: there the cap (n_batch) is reached first.
"""

from __future__ import annotations

# The target length of one prompt step. Measured on 2 cores (qwen2.5-coder:0.5b, a 1,536-token
# prompt, median of 3): 512-token chunks 156 tok/s, 192: 154, 128: 146, 96: 136, 32: 103-119;
# 0.75 s is about 110 tokens there, some 8% of prefill speed for a cancel within a second.
STEP_SECONDS = 0.75
MIN_CHUNK = 32  # below this the per-step overhead starts to cost prefill speed
MEASURE_FROM = 32  # steps with fewer prompt tokens say more about overhead than about rate
SMOOTHING = 0.3  # weight of the newest measurement in the running rate


class PrefillPacer:
    def __init__(self, cap: int, first_chunk: int = 128) -> None:
        self.cap = cap
        self.rate: float | None = None  # prompt tokens per second, smoothed
        self.first_chunk = min(first_chunk, cap)

    def chunk(self) -> int:
        """The prompt tokens the next step may carry."""
        if self.rate is None:
            return self.first_chunk
        return max(MIN_CHUNK, min(self.cap, int(self.rate * STEP_SECONDS)))

    def record(self, tokens: int, seconds: float) -> None:
        """One successful decode that carried `tokens` prompt tokens (and perhaps a few
        generating rows, whose share of the time makes the rate err on the slow side)."""
        if tokens < MEASURE_FROM or seconds <= 0:
            return
        rate = tokens / seconds
        self.rate = rate if self.rate is None else (1 - SMOOTHING) * self.rate + SMOOTHING * rate
