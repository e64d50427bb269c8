"""Go-style durations ("5m", "1h30m", "300ms", "-1m") and keep_alive values.

Ollama's keep_alive is a Go duration string or a number of seconds; Python has no parser
for the former, so this is the one place that reads both.
"""

from __future__ import annotations

import re

_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")


def parse_duration(value: str | float | int) -> float:
    """Seconds for a keep_alive value; raise ValueError on anything else."""
    if isinstance(value, bool):
        raise ValueError(f"invalid duration {value!r}")
    if isinstance(value, int | float):
        return float(value)
    text = value.strip()
    if not text:
        raise ValueError("empty duration")
    try:
        return float(text)  # a bare number means seconds
    except ValueError:
        pass
    sign = -1.0 if text.startswith("-") else 1.0
    body = text.lstrip("+-")
    pos, total = 0, 0.0
    for match in _PART.finditer(body):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if pos != len(body) or not body:
        raise ValueError(f"invalid duration {value!r}")
    return sign * total


def format_duration(seconds: float) -> str:
    """Seconds as a short Go-style string, for `ps` and `show`."""
    if seconds < 0:
        return "-1"
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    h, rest = divmod(int(seconds), 3600)
    m, s = divmod(rest, 60)
    return "".join(f"{v}{u}" for v, u in ((h, "h"), (m, "m"), (s, "s")) if v) or "0s"
