"""Streaming text helpers shared by the engine's stop strings and the server's output parser."""

from __future__ import annotations


def partial_suffix(text: str, markers: list[str]) -> int:
    """Length of the longest suffix of `text` that is a proper prefix of one of `markers`.

    That much of a stream must be held back: the next piece may complete the marker.
    """
    best = 0
    for marker in markers:
        for k in range(min(len(marker) - 1, len(text)), 0, -1):
            if text.endswith(marker[:k]):
                best = max(best, k)
                break
    return best
