"""Ctrl+G in the shell: the input so far in the user's editor, and the edited text back."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import tempfile
from pathlib import Path

from roost import config
from roost.cli.shell import error


def editor_command() -> list[str]:
    for value in (config.EDITOR.get(), os.environ.get("VISUAL", ""), os.environ.get("EDITOR", "")):
        if value.strip():
            try:
                return shlex.split(value)
            except ValueError:  # an unbalanced quote: words, as a shell without quoting sees them
                return value.split()
    for name in ("editor", "nano", "vi"):
        if shutil.which(name):
            return [name]
    return ["vi"]


def edit_in_editor(text: str) -> str | None:
    """Ctrl+G: the input in ROOST_EDITOR (else $VISUAL, $EDITOR); the edited text, or None."""
    with tempfile.NamedTemporaryFile("w", prefix="roost-prompt-", suffix=".txt", delete=False) as f:
        f.write(text)
    try:
        command: list[str] = [*editor_command(), f.name]
        try:
            done = subprocess.run(command, check=False)
        except OSError as exc:
            error(f"could not start the editor {command[0]!r} ({exc.strerror}); set ROOST_EDITOR")
            return None
        if done.returncode != 0:
            error(f"the editor {command[0]!r} exited with status {done.returncode}")
            return None
        edited = Path(f.name).read_text().rstrip("\n")
        return edited if edited.strip() else None
    finally:
        os.unlink(f.name)
