"""Terminal output: streamed text with word wrap, tables, human sizes and times, progress.

Tokens are written with plain `write` + `flush` (no rich on the per-token path). Results go
to stdout, progress and statistics to stderr. Colour only on a TTY and never with NO_COLOR.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import shutil
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress, TaskID


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
        return "Less than a second ago" if not future else "Less than a second from now"
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
    """Progress of a pull or push: a bar per layer on a terminal, plain lines otherwise.

    On a terminal the bars live in a rich live display, which keeps itself at the bottom of
    the output: a status line printed while it runs lands above the bars. So the display is
    stopped (its bars stay on screen) before any later status line, such as "verifying sha256
    digest" or "success", and events for a layer whose bar has ended are dropped; a layer seen
    for the first time after that starts a new display. Piped, each distinct status is one
    line, once: the server repeats a layer's event (completed == total) after verifying it.
    """

    def __init__(self, stream: IO[str] | None = None, console: Console | None = None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.console = console
        self.tty = console.is_terminal if console is not None else self.stream.isatty()
        self.bar: Progress | None = None
        self.tasks: dict[str, TaskID] = {}
        self.ended: set[str] = set()  # digests whose bar is finished and on screen
        self.printed: set[str] = set()

    def __enter__(self) -> PullProgress:
        if self.tty and self.console is None:
            from rich.console import Console

            self.console = Console(file=self.stream, no_color=not use_color(self.stream),
                                   highlight=False)
        return self

    def update(self, event: dict[str, Any]) -> None:
        status = str(event.get("status", ""))
        digest, total = event.get("digest"), event.get("total")
        if digest:  # a layer's step: it never ends the bars
            digest = str(digest)
            if self.console is None:
                self._line(status)
            elif total and digest not in self.ended:  # no size yet: the bar starts when one comes
                self._advance(digest, status, int(total), int(event.get("completed") or 0))
        elif status:
            self._end_bars()
            self._line(status)

    def _advance(self, digest: str, status: str, total: int, completed: int) -> None:
        if self.bar is None:
            from rich.progress import (
                BarColumn,
                DownloadColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
                TransferSpeedColumn,
            )

            self.bar = Progress(
                TextColumn("{task.description}", markup=False), BarColumn(), DownloadColumn(),
                TransferSpeedColumn(), TimeRemainingColumn(), console=self.console, transient=False,
            )
            self.bar.start()
        task = self.tasks.get(digest)
        if task is None:  # a resumed download starts part-way: those bytes are no speed
            task = self.tasks[digest] = self.bar.add_task(status, total=total, completed=completed)
        # A push renames a layer's step ("starting upload", then "pushing ..."): one bar.
        self.bar.update(task, description=status, total=total, completed=completed)

    def _end_bars(self) -> None:
        """Stop the live display, leaving its bars drawn, so the next line goes below them.

        The server moves on to a layer-less step only once every layer's bytes are in, and
        its progress events are throttled, so the last one seen may fall short: the bars are
        filled before they are left on screen.
        """
        if self.bar is None:
            return
        for task in self.bar.tasks:
            if task.total is not None:
                self.bar.update(task.id, completed=task.total)
        self.bar.stop()
        self.bar = None
        self.ended.update(self.tasks)
        self.tasks.clear()

    def _line(self, status: str) -> None:
        if status in self.printed:
            return
        self.printed.add(status)
        if self.console is not None:
            self.console.print(status, markup=False, highlight=False)
        else:
            self.stream.write(f"{status}\n")
            self.stream.flush()

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:  # an error mid-transfer: leave the bars where they stopped
            self.bar.stop()
            self.bar = None


@contextlib.contextmanager
def spinner(text: str, err: IO[str] = sys.stderr, delay: float = 0.5) -> Iterator[None]:
    """A spinner on a terminal while something slow happens (a load, a long prompt).

    It appears only after `delay`, so a quick answer never flickers, and erases itself; on a
    pipe or a dumb terminal nothing is drawn.
    """
    if not err.isatty() or os.environ.get("TERM", "dumb") == "dumb":
        yield
        return
    stop = threading.Event()

    def spin() -> None:
        if stop.wait(delay):
            return
        for frame in itertools.cycle("⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"):
            err.write(f"\r{frame} {text}")
            err.flush()
            if stop.wait(0.1):
                err.write("\r\x1b[K")
                err.flush()
                return

    thread = threading.Thread(target=spin, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
