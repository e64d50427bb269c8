"""Terminal output: streamed text with word wrap, tables, human sizes and times, progress.

Tokens are written with plain `write` + `flush` (no rich on the per-token path). Results go
to stdout, progress and statistics to stderr. Colour only on a TTY and never with NO_COLOR.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from datetime import UTC, datetime
from typing import IO, Any


def use_color(stream: IO[str]) -> bool:
    return stream.isatty() and not os.environ.get("NO_COLOR")


class WrapWriter:
    """Write a token stream, breaking lines at word boundaries before the terminal edge."""

    def __init__(self, out: IO[str], width: int | None) -> None:
        self.out = out
        self.width = width
        self.col = 0
        self.word = ""

    def write(self, text: str) -> None:
        if not self.width:
            self.out.write(text)
            self.out.flush()
            return
        for ch in text:
            if ch == "\n":
                self._flush_word()
                self.out.write("\n")
                self.col = 0
            elif ch == " ":
                self._flush_word()
                if self.col < self.width:
                    self.out.write(" ")
                    self.col += 1
            else:
                self.word += ch
        self.out.flush()

    def _flush_word(self) -> None:
        if not self.word:
            return
        if self.col + len(self.word) > self.width and self.col > 0:  # type: ignore[operator]
            self.out.write("\n")
            self.col = 0
        self.out.write(self.word)
        self.col += len(self.word)
        self.word = ""

    def close(self) -> None:
        self._flush_word()
        self.out.flush()


def wrap_width(nowordwrap: bool, out: IO[str] = sys.stdout) -> int | None:
    if nowordwrap or not out.isatty():
        return None
    return max(20, shutil.get_terminal_size((80, 24)).columns - 5)


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit in ("B", "KB", "MB") else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n} B"


def human_since(iso: str) -> str:
    return _relative(_parse(iso), future=False)


def human_until(iso: str) -> str:
    when = _parse(iso)
    if when.year > 2200:
        return "Forever"
    if when <= datetime.now(UTC):
        return "Stopping..."
    return _relative(when, future=True)


def _parse(iso: str) -> datetime:
    # Go writes nanoseconds; datetime takes at most microseconds.
    text = re.sub(r"(\.\d{6})\d+", r"\1", iso.replace("Z", "+00:00"))
    when = datetime.fromisoformat(text)
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _relative(when: datetime, future: bool) -> str:
    seconds = abs((when - datetime.now(UTC)).total_seconds())
    for size, unit in ((86400 * 365, "year"), (86400 * 30, "month"), (86400 * 7, "week"),
                       (86400, "day"), (3600, "hour"), (60, "minute"), (1, "second")):
        if seconds >= size:
            n = int(seconds // size)
            phrase = f"{n} {unit}{'s' if n != 1 else ''}"
            break
    else:
        return "Less than a second" if not future else "Less than a second from now"
    if n == 1 and unit != "second":
        phrase = f"{'an' if unit == 'hour' else 'a'} {unit}"
    return f"{phrase} from now" if future else f"{phrase} ago"


def table(rows: list[list[str]], headers: list[str], out: IO[str] = sys.stdout) -> None:
    """Left-aligned columns separated by spaces, like Ollama's tabwriter output."""
    widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers))]
    for row in [headers, *rows]:
        out.write("    ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
        out.write("\n")


class PullProgress:
    """A progress bar per layer on a terminal; plain status lines otherwise."""

    def __init__(self, err: IO[str] = sys.stderr) -> None:
        self.err = err
        self.tty = err.isatty()
        self.bar: Any = None
        self.tasks: dict[str, Any] = {}
        self.last_status = ""

    def __enter__(self) -> PullProgress:
        if self.tty:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                DownloadColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
                TransferSpeedColumn,
            )

            console = Console(file=self.err, no_color=not use_color(self.err))
            self.bar = Progress(
                TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                TransferSpeedColumn(), TimeRemainingColumn(), console=console, transient=False,
            )
            self.bar.start()
        return self

    def update(self, event: dict[str, Any]) -> None:
        status = str(event.get("status", ""))
        digest, total = event.get("digest"), event.get("total")
        if digest and total:
            if self.bar is not None:
                task = self.tasks.get(digest)
                if task is None:
                    task = self.tasks[digest] = self.bar.add_task(status, total=total)
                self.bar.update(task, completed=event.get("completed", 0))
            elif status != self.last_status:
                self.err.write(f"{status}\n")
        elif status != self.last_status:
            if self.bar is not None:
                self.bar.console.print(status)
            else:
                self.err.write(f"{status}\n")
        self.last_status = status

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()
