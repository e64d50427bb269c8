"""PullProgress, fed the event sequence the real server sends for a pull.

On a terminal the bars must end before the later status lines (rich's live display otherwise
stays at the bottom, below "success"); piped, every status is one line, once.
"""

from __future__ import annotations

import io
import re

import pytest
from rich.console import Console

from roost.cli.render import PullProgress

SIZE = 491_400_064
DIGEST = "sha256:1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"
LAYER = "pulling 1d9614638d18"


def layer(completed: int, digest: str = DIGEST, total: int = SIZE) -> dict[str, object]:
    status = f"pulling {digest.split(':')[1][:12]}"
    return {"status": status, "digest": digest, "total": total, "completed": completed}


# What POST /api/pull streams for qwen2.5-coder:0.5b (models/pull.py): progress is throttled,
# so the last event before verifying falls short, and the layer is reported again after it.
PULL_EVENTS: list[dict[str, object]] = [
    {"status": "pulling manifest"},
    layer(0),
    *[layer(k) for k in range(1, SIZE - 1000, SIZE // 25)],
    {"status": "verifying sha256 digest"},
    layer(SIZE),
    {"status": "writing manifest"},
    {"status": "success"},
]


def feed(progress: PullProgress, events: list[dict[str, object]]) -> None:
    with progress:
        for event in events:
            progress.update(event)


def screen(raw: str) -> list[str]:
    """What a terminal shows after `raw`: enough of VT100 for rich's live display."""
    lines, row, col = [""], 0, 0
    for token in re.findall(r"\x1b\[[0-9;?]*[A-Za-z]|\r|\n|[^\x1b\r\n]+", raw):
        if token == "\n":
            row, col = row + 1, 0
            if row == len(lines):
                lines.append("")
        elif token == "\r":
            col = 0
        elif token == "\x1b[2K":
            lines[row] = ""
        elif token.startswith("\x1b[") and token.endswith("A"):
            row = max(0, row - int(token[2:-1] or 1))
        elif token.startswith("\x1b"):
            continue  # colours, cursor shown/hidden
        else:
            line = lines[row].ljust(col)
            lines[row] = line[:col] + token + line[col + len(token):]
            col += len(token)
    return [line.rstrip() for line in lines if line.strip()]


def terminal() -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, force_terminal=True, width=120, color_system="standard"), out


def test_piped_prints_each_status_once_in_order() -> None:
    out = io.StringIO()
    feed(PullProgress(out), PULL_EVENTS)
    assert out.getvalue().splitlines() == [
        "pulling manifest", LAYER, "verifying sha256 digest", "writing manifest", "success",
    ]
    assert "\x1b" not in out.getvalue()


def test_terminal_bar_ends_before_the_later_status_lines() -> None:
    console, out = terminal()
    feed(PullProgress(console=console), PULL_EVENTS)
    shown = screen(out.getvalue())
    assert shown[0] == "pulling manifest"
    assert shown[1].startswith(LAYER) and "491.4/491.4 MB" in shown[1]  # one bar, filled
    assert shown[2:] == ["verifying sha256 digest", "writing manifest", "success"]
    raw = out.getvalue()
    # Nothing of the bar is drawn after the first later line: the live display has stopped.
    assert LAYER not in raw[raw.index("verifying sha256 digest"):]


def test_terminal_one_bar_per_layer() -> None:
    other = "sha256:" + "ab" * 32
    events: list[dict[str, object]] = [
        {"status": "pulling manifest"},
        layer(0), layer(0, other, 1000), layer(SIZE // 2), layer(500, other, 1000),
        layer(SIZE), layer(1000, other, 1000),
        {"status": "verifying sha256 digest"},
        {"status": "writing manifest"},
        {"status": "success"},
    ]
    console, out = terminal()
    feed(PullProgress(console=console), events)
    shown = screen(out.getvalue())
    assert shown[0] == "pulling manifest"
    assert shown[1].startswith(LAYER) and shown[2].startswith("pulling abababababab")
    assert shown[3:] == ["verifying sha256 digest", "writing manifest", "success"]


def test_a_push_renames_its_bar_instead_of_adding_one() -> None:
    events: list[dict[str, object]] = [
        {"status": "retrieving manifest"},
        {"status": "starting upload", "digest": DIGEST, "total": SIZE},
        {"status": "pushing 1d9614638d18", "digest": DIGEST, "total": SIZE, "completed": SIZE},
        {"status": "pushing manifest"},
        {"status": "success"},
    ]
    console, out = terminal()
    feed(PullProgress(console=console), events)
    shown = screen(out.getvalue())
    assert len(shown) == 4 and shown[1].startswith("pushing 1d9614638d18")
    piped = io.StringIO()
    feed(PullProgress(piped), events)
    assert piped.getvalue().splitlines() == [
        "retrieving manifest", "starting upload", "pushing 1d9614638d18", "pushing manifest", "success",
    ]


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("no_color", [False, True])
def test_colour_only_without_no_color(monkeypatch: pytest.MonkeyPatch, no_color: bool) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm-256color")
    monkeypatch.setenv("COLUMNS", "120")
    if no_color:
        monkeypatch.setenv("NO_COLOR", "1")
    out = Tty()
    feed(PullProgress(out), PULL_EVENTS)
    assert screen(out.getvalue())[-1] == "success"
    colours = re.findall(r"\x1b\[[0-9;]*m", out.getvalue())
    assert not [c for c in colours if c not in ("\x1b[0m", "\x1b[m")] if no_color else colours
