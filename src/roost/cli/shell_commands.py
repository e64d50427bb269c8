"""The shell's slash commands, one function each, found by name in COMMANDS.

Each takes the shell, the line's words and the line itself, and returns True only to end
the shell. A server's error or Ctrl+C ends only the command (Shell.handle_safely).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from roost.cli.shell_help import USAGE_SHOW, cmd_help, say
from roost.cli.shell_set import cmd_set

if TYPE_CHECKING:
    from roost.cli.shell import Shell

Command = Callable[["Shell", list[str], str], bool]


def run_command(shell: Shell, line: str) -> bool:
    args = line.split()
    command = COMMANDS.get(args[0])
    if command is None:
        print(f"Unknown command '{args[0]}'. Type /? for help")
        return False
    return command(shell, args, line)


def cmd_bye(shell: Shell, args: list[str], line: str) -> bool:
    return True


def cmd_clear(shell: Shell, args: list[str], line: str) -> bool:
    shell.session.clear()
    print("Cleared session context")
    return False


def cmd_list(shell: Shell, args: list[str], line: str) -> bool:
    """As `roost list` prints it."""
    from roost.cli.render import human_bytes, human_since, table

    prefix = args[1] if len(args) > 1 else ""
    rows = [[m["name"], m["digest"][:12], human_bytes(m["size"]), human_since(m["modified_at"])]
            for m in shell.session.client.list() if m["name"].startswith(prefix)]
    table(rows, ["NAME", "ID", "SIZE", "MODIFIED"])
    return False


def cmd_load(shell: Shell, args: list[str], line: str) -> bool:
    """Switch models and keep the conversation. Only a model in the store: as in Ollama's
    shell, a name it lacks is said and nothing is pulled (`roost pull` is for that)."""
    from roost.api.client import ResponseError

    if len(args) != 2:
        print("Usage:\n  /load <modelname>")
        return False
    session, before = shell.session, shell.session.model
    print(f"Loading model '{args[1]}'")
    try:
        session.client.show(args[1])
    except ResponseError as exc:
        if exc.status != 404:
            raise
        print(f"Couldn't find model '{args[1]}'")
        return False
    try:
        session.model = args[1]
        session.load()
    except BaseException:
        session.model = before
        raise
    return False


def cmd_save(shell: Shell, args: list[str], line: str) -> bool:
    """A new model from this one: the session's system message, parameters and conversation.

    The model's own saved messages come first, as the server puts them before each chat.
    """
    if len(args) != 2:
        print("Usage:\n  /save <modelname>")
        return False
    session = shell.session
    fields: dict[str, Any] = {"from": session.model, "system": session.settings.system,
                              "parameters": session.settings.options or None}
    if session.messages:
        saved = session.client.show(session.model).get("messages") or []
        fields["messages"] = [*saved, *session.messages]
    session.client.create(args[1], **fields)
    print(f"Created new model '{args[1]}'")
    return False


def cmd_show(shell: Shell, args: list[str], line: str) -> bool:
    if len(args) < 2:
        say(USAGE_SHOW)
        return False
    what = args[1]
    if what not in SHOW:
        print(f"Unknown command '/show {what}'. Type /? for help")
        return False
    info = shell.session.client.show(shell.session.model)
    print(SHOW[what](shell, info), end="")
    return False


def _info(shell: Shell, info: dict[str, Any]) -> str:
    from roost.cli.models import _summary

    return _summary(info)


def _text(key: str, missing: str) -> Callable[[Shell, dict[str, Any]], str]:
    return lambda shell, info: (info.get(key) or missing).rstrip("\n") + "\n"


def _modelfile(shell: Shell, info: dict[str, Any]) -> str:
    """The model's Modelfile, then what this session has set (as `/save` would write it)."""
    text = (info.get("modelfile") or "").rstrip("\n") + "\n"
    settings = shell.session.settings
    extra = [f'SYSTEM """{settings.system}"""'] if settings.system else []
    extra += [f"PARAMETER {row}" for row in _rows(settings.options)]
    return text + ("# set in this session\n" + "\n".join(extra) + "\n" if extra else "")


def _parameters(shell: Shell, info: dict[str, Any]) -> str:
    out = ["Model defined parameters:"]
    params = (info.get("parameters") or "").strip()
    out += [f"  {row}" for row in params.splitlines()] or [
        "  No additional parameters were specified for this model."]
    options = shell.session.settings.options
    if options:
        out += ["", "User defined parameters:"] + [f"  {row}" for row in _rows(options)]
    return "\n".join(out) + "\n\n"


def _rows(options: dict[str, Any]) -> list[str]:
    """Options as the server lists a model's parameters: a row per value, strings quoted."""
    return [f"{name:<30} {json.dumps(v) if isinstance(v, str) else v}"
            for name, value in options.items() for v in (value if isinstance(value, list) else [value])]


def _system(shell: Shell, info: dict[str, Any]) -> str:
    system = shell.session.settings.system or info.get("system") or ""
    return system.rstrip("\n") + "\n\n" if system else "No system message was specified for this model.\n"


SHOW: dict[str, Callable[[Shell, dict[str, Any]], str]] = {
    "info": _info,
    "license": _text("license", "No license was specified for this model."),
    "modelfile": _modelfile,
    "parameters": _parameters,
    "system": _system,
    "template": _text("template", "No prompt template was specified for this model."),
}

COMMANDS: dict[str, Command] = {
    "/bye": cmd_bye,
    "/exit": cmd_bye,
    "/clear": cmd_clear,
    "/list": cmd_list,
    "/load": cmd_load,
    "/save": cmd_save,
    "/set": cmd_set,
    "/show": cmd_show,
    "/?": cmd_help,
    "/help": cmd_help,
}
