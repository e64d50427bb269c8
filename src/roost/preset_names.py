"""The rule for a preset's name: the server enforces it, the CLI says it before asking.

A name is part of the preset's URL (/v1/presets/NAME), so it must be a single plain path
segment; kept here, free of the server's and the CLI's imports, so both read the same rule.
"""

from __future__ import annotations

_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")
RULE = "1 to 64 letters, digits, '-', '_' or '.', and not only dots"


def problem(name: str) -> str | None:
    """Why `name` can never be a preset's, or None."""
    if 0 < len(name) <= 64 and set(name) <= _CHARS and name.strip("."):
        return None
    return f"invalid preset name {name!r}: a preset name is {RULE}"
