"""`/set ...` in the shell: what the session sends from now on, and how it prints.

A bad value is one line and nothing changes. Parameters are checked by `run.parse_options`,
the same check the server applies to a request's options.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING

from roost.cli.shell_help import USAGE_PARAMETERS, USAGE_SET, say

if TYPE_CHECKING:
    from roost.cli.session import Settings
    from roost.cli.shell import Shell

THINK_LEVELS: dict[str, bool | str] = {"true": True, "false": False, "low": "low",
                                       "medium": "medium", "high": "high", "max": "max"}


def cmd_set(shell: Shell, args: list[str], line: str) -> bool:
    if len(args) < 2:
        say(USAGE_SET)
    elif args[1] == "parameter":
        set_parameter(shell, args[2:])
    elif args[1] == "system":
        set_system(shell, line)
    elif args[1] in ("think", "nothink"):
        set_think(shell, args)
    elif args[1] == "format":
        if len(args) != 3 or args[2] != "json":
            print("Invalid or missing format. For 'json' mode use '/set format json'")
        else:
            shell.session.settings.format = "json"
            print("Set format to 'json' mode.")
    elif args[1] in FLAGS and len(args) == 2:
        FLAGS[args[1]](shell.session.settings)
        print(f"Set '{args[1]}' mode.")
    else:
        print(f"Unknown command '/set {' '.join(args[1:])}'. Type /? for help")
    return False


def _setter(name: str, value: object) -> Callable[[Settings], None]:
    return lambda settings: setattr(settings, name, value)


FLAGS: dict[str, Callable[[Settings], None]] = {
    "history": _setter("history", True),
    "nohistory": _setter("history", False),
    "wordwrap": _setter("wordwrap", True),
    "nowordwrap": _setter("wordwrap", False),
    "verbose": _setter("verbose", True),
    "quiet": _setter("verbose", False),
    "noformat": _setter("format", None),
}


def set_parameter(shell: Shell, words: list[str]) -> None:
    """`/set parameter NAME VALUE...`: several values only for stop."""
    import click

    from roost.cli.run import parse_options

    if len(words) < 2:
        say(USAGE_PARAMETERS)
        return
    name, values = words[0], words[1:]
    pairs = [f"stop={v}" for v in values] if name == "stop" else [f"{name}={' '.join(values)}"]
    try:
        parsed = parse_options(pairs)
    except click.BadParameter as exc:
        print(f"Couldn't set parameter '{name}': {exc.message}")
        return
    shell.session.settings.options.update(parsed)
    print(f"Set parameter '{name}' to '{', '.join(values)}'")


def set_system(shell: Shell, line: str) -> None:
    """`/set system TEXT`, `/set system "TEXT"`, or `/set system \"\"\"` over several lines."""
    from roost.cli.shell import QUOTES

    match = re.match(r"/set\s+system\s*(.*)", line, re.DOTALL)
    text = match.group(1).strip() if match else ""
    if not text:
        say(USAGE_SET)
        return
    if text.startswith(QUOTES):
        text = text[len(QUOTES):]
        if not text.endswith(QUOTES):  # the message runs on until a line ends with \"\"\"
            shell.mode, shell.lines = "system", [text] if text else []
            return
        text = text[: -len(QUOTES)]
    elif len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        text = text[1:-1]
    shell.set_system(text)


def set_think(shell: Shell, args: list[str]) -> None:
    settings = shell.session.settings
    if args[1] == "nothink":
        if len(args) > 2:
            print("'/set nothink' takes no value")
            return
        settings.think = False
        print("Set 'nothink' mode.")
    else:
        level = args[2].lower() if len(args) > 2 else "true"
        if len(args) > 3 or level not in THINK_LEVELS:
            print(f"Invalid think level '{' '.join(args[2:])}': use low, medium, high or max")
            return
        settings.think = THINK_LEVELS[level]
        print("Set 'think' mode." if len(args) == 2 else f"Set 'think' mode to '{args[2]}'.")
        if "thinking" not in shell.capabilities():
            print(f"Warning: '{shell.session.model}' does not support thinking output")
