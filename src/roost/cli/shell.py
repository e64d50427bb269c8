"""The interactive shell of `roost run`: Ollama's `>>>` prompt, on prompt_toolkit.

One line at a time: a line that starts with `/` is a command (shell_commands), anything else
is a message for the model. `\"\"\"` opens a message (or a `/set system`) that runs over
several lines until a line ends with `\"\"\"`; a pasted block and the text back from the
editor (Ctrl+G) are one message however many lines they hold. Ctrl+C stops an answer and
keeps nothing of that turn; Ctrl+D at an empty prompt leaves.

This module is imported only when the shell opens, so prompt_toolkit is imported here freely.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from prompt_toolkit import PromptSession
from prompt_toolkit.formatted_text import FormattedText
from prompt_toolkit.history import FileHistory
from prompt_toolkit.key_binding import KeyBindings, KeyPressEvent

from roost import config

if TYPE_CHECKING:
    from roost.cli.session import Session

PLACEHOLDER = "Send a message (/? for help)"
MULTILINE_PLACEHOLDER = 'Use """ to end multi-line input'


def _placeholder(text: str) -> FormattedText:
    """Dim on a terminal that may have colour; plain with NO_COLOR."""
    return FormattedText([("" if os.environ.get("NO_COLOR") else "fg:ansibrightblack", text)])


def _continuation(width: int, line_number: int, is_soft_wrap: int) -> str:
    """`... ` before a line the user started; nothing before a long line's wrapped part."""
    return "" if is_soft_wrap else "... "
QUOTES = '"""'
IMAGE_EXTENSIONS = ("png", "jpg", "jpeg", "gif", "webp")
_EXT = "|".join(IMAGE_EXTENSIONS)
_IMAGE = re.compile(
    rf"""(['"])((?:~|\.{{1,2}})?/[^'"\n]+?\.(?:{_EXT}))\1"""  # a quoted path
    rf"""|(?<!\S)((?:~|\.{{1,2}})?/(?:\\.|\S)+?\.(?:{_EXT}))(?!\w)""",  # spaces escaped
    re.IGNORECASE,
)


class EditRequest(Exception):
    """Ctrl+G: leave the prompt so that the editor can have the terminal."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text


class ShellHistory(FileHistory):
    """ROOST_HOME/history, written only while `enabled()` says so (ROOST_NOHISTORY, /set nohistory)."""

    def __init__(self, path: Path, enabled: Callable[[], bool]) -> None:
        super().__init__(str(path))
        self.path = path
        self.enabled = enabled
        self.broken = False
        self.warning = ""  # said once the prompt has given the terminal back

    def load_history_strings(self) -> Iterable[str]:
        try:
            yield from super().load_history_strings()
        except OSError as exc:
            self.warning = f"could not read the history file {self.path} ({exc.strerror})"

    def store_string(self, string: str) -> None:
        if not self.enabled() or self.broken:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            super().store_string(string)
        except OSError as exc:  # a full disk or a read-only home: the shell goes on without
            self.broken = True
            self.warning = f"could not write the history file {self.path} ({exc.strerror}); history is off"

    def say_warning(self) -> None:
        if self.warning:
            error(self.warning)
            self.warning = ""


def key_bindings() -> KeyBindings:
    kb = KeyBindings()

    @kb.add("c-c")
    def _interrupt(event: KeyPressEvent) -> None:
        buffer = event.app.current_buffer
        if buffer.text:  # a typed line is thrown away, the prompt stays
            buffer.reset()
        else:
            event.app.exit(exception=KeyboardInterrupt, style="class:aborting")

    @kb.add("c-g")
    def _edit(event: KeyPressEvent) -> None:
        event.app.exit(exception=EditRequest(event.app.current_buffer.text))

    @kb.add("escape", "enter")
    def _newline(event: KeyPressEvent) -> None:
        event.app.current_buffer.insert_text("\n")

    return kb


class Shell:
    def __init__(self, session: Session) -> None:
        self.session = session
        session.settings.history = session.settings.history and not config.NOHISTORY.get()
        self.history = ShellHistory(config.home() / "history", lambda: self.session.settings.history)
        self.prompt: PromptSession[str] = PromptSession(
            history=self.history, key_bindings=key_bindings(), prompt_continuation=_continuation,
            enable_history_search=False,
        )
        self.mode: str | None = None  # inside \"\"\": "prompt" or "system"
        self.lines: list[str] = []
        self._capabilities: dict[str, list[str]] = {}

    def run(self) -> None:
        prefill = ""
        while True:
            try:
                text = self.read(prefill)
            except KeyboardInterrupt:
                self.mode, self.lines = None, []
                print("Use Ctrl + d or /bye to exit.")
                continue
            except EOFError:
                return
            except EditRequest as request:
                from roost.cli.shell_editor import edit_in_editor

                prefill = edit_in_editor(request.text) or request.text
                continue
            prefill = ""
            if self.handle_safely(text):
                return

    def handle_safely(self, text: str) -> bool:
        """handle(), where Ctrl+C and a server's error end only this line, never the shell."""
        from roost.api.client import ConnectError, ResponseError

        try:
            return self.handle(text)
        except KeyboardInterrupt:
            sys.stdout.write("\n")  # the answer, a pull or a load stops; nothing of it is kept
        except (ResponseError, ConnectError) as exc:
            error(exc)
        return False

    def read(self, prefill: str = "") -> str:
        try:
            if self.mode:
                return self.prompt.prompt("... ", placeholder=_placeholder(MULTILINE_PLACEHOLDER),
                                          default=prefill)
            return self.prompt.prompt(">>> ", placeholder=_placeholder(PLACEHOLDER), default=prefill)
        finally:
            self.history.say_warning()

    def handle(self, text: str) -> bool:
        """One line (or pasted block) from the prompt; True when the shell should end."""
        if self.mode:
            done = text.rstrip().endswith(QUOTES)
            self.lines.append(text.rstrip()[: -len(QUOTES)] if done else text)
            if done:
                mode, body = self.mode, "\n".join(self.lines).strip("\n")
                self.mode, self.lines = None, []
                if mode == "system":
                    self.set_system(body)
                else:
                    self.send(body)
            return False
        if text.startswith(QUOTES):
            rest = text[len(QUOTES):]
            if rest.endswith(QUOTES):
                self.send(rest[: -len(QUOTES)])
            else:
                self.mode, self.lines = "prompt", [rest] if rest else []
            return False
        stripped = text.strip()
        if stripped.startswith("/") and "\n" not in stripped and not self.names_a_file(stripped):
            from roost.cli.shell_commands import run_command

            return run_command(self, stripped)
        self.send(text)
        return False

    def names_a_file(self, line: str) -> bool:
        """`/tmp/cat.png what is this?` is a message, not an unknown command."""
        return Path(line.split()[0]).expanduser().is_file()

    def set_system(self, text: str) -> None:
        self.session.settings.system = text or None
        print("Set system message.")

    def send(self, text: str) -> None:
        """One turn; Session.ask takes the question back if it raises (Ctrl+C, a server error)."""
        if not text.strip():
            return
        images = image_paths(text)
        if images and "vision" not in self.capabilities():
            error(f"'{self.session.model}' cannot see images, so the message with {images[0]} "
                  "was not sent")
            return
        self.session.ask(text)
        sys.stdout.write("\n")  # a blank line before the next prompt, as Ollama's shell
        sys.stdout.flush()

    def capabilities(self) -> list[str]:
        model = self.session.model
        if model not in self._capabilities:
            self._capabilities[model] = list(self.session.client.show(model).get("capabilities") or [])
        return self._capabilities[model]


def run_shell(session: Session) -> None:
    Shell(session).run()


def error(exc: BaseException | str) -> None:
    sys.stdout.flush()
    sys.stderr.write(f"Error: {exc}\n")
    sys.stderr.flush()


def image_paths(text: str) -> list[str]:
    """Paths in a message that name an existing image file (quoted, or with spaces escaped)."""
    found = []
    for match in _IMAGE.finditer(text):
        raw = match.group(2) or re.sub(r"\\(.)", r"\1", match.group(3))
        path = Path(raw).expanduser()
        if path.is_file():
            found.append(str(path))
    return found
