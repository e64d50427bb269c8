"""Ollama's Modelfile: parsed into the fields of /api/create, and written back from a model.

Pure Python on purpose: the CLI parses the Modelfile (as Ollama's does) before it talks to
the server, and `roost --help` must not pay for anything heavier. The server writes the
text `show --modelfile` prints with `render`, in the same quoting that `parse` reads, so a
printed Modelfile recreates the same model.

The format: one instruction per line (case-insensitive), `#` starts a comment line, and a
value may be quoted with `"` or, across lines, with `\"\"\"`. A FROM or ADAPTER that names an
existing file or folder (relative to the Modelfile's folder, `~` expanded) is a local file;
a FROM that only looks like a path (`./x`, `/x`, `~/x`, `x.gguf`) and is missing is an error,
not a model name; any other FROM is a model name.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from roost.core import KNOWN_OPTIONS, OptionError, check_options

COMMANDS = ("from", "parameter", "template", "system", "adapter", "license", "message", "requires")
ROLES = ("system", "user", "assistant")
_TRIPLE = '"""'
_WORD = re.compile(r"[ \t]*(\S*)[ \t]*(.*)", re.DOTALL)
_PATH_PREFIXES = (".", "/", "~")
_WEIGHT_SUFFIXES = (".gguf", ".safetensors")
# A semantic version as Ollama's parser takes it (Go's x/mod/semver, the `v` optional):
# MAJOR[.MINOR[.PATCH[-PRERELEASE][+BUILD]]].
_NUM = r"(?:0|[1-9][0-9]*)"
_PRE = r"(?:0|[1-9][0-9]*|[0-9]*[A-Za-z-][0-9A-Za-z-]*)"
_BUILD = r"[0-9A-Za-z-]+"
_SEMVER = re.compile(rf"v?{_NUM}(?:\.{_NUM}(?:\.{_NUM}(?:-{_PRE}(?:\.{_PRE})*)?"
                     rf"(?:\+{_BUILD}(?:\.{_BUILD})*)?)?)?")


class ModelfileError(ValueError):
    """A Modelfile that cannot be used; the message names the line."""


@dataclass
class Modelfile:
    """A parsed Modelfile. Exactly one of `model` (a name) and `weights` (a file) is set."""

    model: str | None = None
    weights: Path | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    template: str | None = None
    system: str | None = None
    adapters: list[Path] = field(default_factory=list)
    license: list[str] = field(default_factory=list)
    messages: list[dict[str, str]] = field(default_factory=list)
    requires: str | None = None

    def request_fields(self) -> dict[str, Any]:
        """The /api/create fields that need no upload (FROM a name, and the text ones)."""
        fields: dict[str, Any] = {"from": self.model, "template": self.template,
                                  "system": self.system, "requires": self.requires}
        if self.parameters:
            fields["parameters"] = self.parameters
        if self.messages:
            fields["messages"] = self.messages
        if self.license:
            fields["license"] = self.license[0] if len(self.license) == 1 else self.license
        return {k: v for k, v in fields.items() if v is not None}


def parse(text: str, folder: Path) -> Modelfile:
    """Parse a Modelfile whose relative paths are relative to `folder`."""
    lines = text.replace("\r\n", "\n").split("\n")
    out = Modelfile()
    at = 0
    while at < len(lines):
        line = lines[at].lstrip()
        if not line.strip() or line.startswith("#"):
            at += 1
            continue
        word, rest = _word(line)
        command = word.lower()
        if command not in COMMANDS:
            raise ModelfileError(f"line {at + 1}: unknown instruction {word!r}: command must be "
                                 f"one of {', '.join(c.upper() for c in COMMANDS)}")
        key = ""
        if command in ("parameter", "message"):
            key, rest = _word(rest)
        value, after = _value(rest, lines, at)
        if not value and command != "system" and command != "message":
            raise ModelfileError(f"line {at + 1}: {command.upper()} needs a value")
        _apply(out, command, key.strip(), value, folder, at + 1)
        at = after
    if out.model is None and out.weights is None:
        raise ModelfileError("no FROM line: a Modelfile must say which model or file to start from")
    return out


def _word(text: str) -> tuple[str, str]:
    """The first word of `text` and what follows it, without the blanks between them."""
    match = _WORD.match(text)
    return (match.group(1), match.group(2)) if match else ("", "")


def _value(first: str, lines: list[str], at: int) -> tuple[str, int]:
    """The value that starts with `first` (the rest of line `at`) and the index after it."""
    quote = _TRIPLE if first.startswith(_TRIPLE) else '"' if first.startswith('"') else ""
    body = first[len(quote):]
    if not quote or (quote == '"' and '"' in body.rstrip()[:-1]):
        return first.strip(), at + 1  # unquoted, or a quote inside: the text as it stands
    pieces, index, line = [], at, body
    while True:
        end = line.rstrip()
        if end.endswith(quote):
            pieces.append(end[:-len(quote)])
            return "\n".join(pieces), index + 1
        pieces.append(line)
        index += 1
        if index >= len(lines):
            raise ModelfileError(f"line {at + 1}: the value opened with {quote} is never closed")
        line = lines[index]


def _apply(out: Modelfile, command: str, key: str, value: str, folder: Path, n: int) -> None:
    if command == "from":
        if out.model is not None or out.weights is not None:
            raise ModelfileError(f"line {n}: a second FROM (a Modelfile starts from one model)")
        path = local_path(value, folder)
        if path is not None:
            out.weights = _weights_file(path, n)
        elif looks_like_path(value):  # as Ollama's stat error says it, not "invalid model name"
            raise ModelfileError(f"line {n}: {value}: no such file or directory")
        else:
            out.model = value
    elif command == "parameter":
        _parameter(out.parameters, key, value, n)
    elif command == "message":
        if key.lower() not in ROLES:
            raise ModelfileError(f"line {n}: MESSAGE role must be one of {', '.join(ROLES)}, "
                                 f"got {key!r}")
        out.messages.append({"role": key.lower(), "content": value})
    elif command == "adapter":
        path = local_path(value, folder)
        if path is None or not path.is_file():
            raise ModelfileError(f"line {n}: ADAPTER file {value} does not exist")
        out.adapters.append(_gguf(path, n))
    elif command == "license":
        out.license.append(value)
    elif command == "requires":
        try:
            out.requires = requires_version(value)
        except ValueError as exc:
            raise ModelfileError(f"line {n}: {exc}") from exc
    else:
        setattr(out, command, value)  # template, system: the last one counts, as in Ollama


def local_path(value: str, folder: Path) -> Path | None:
    """The file or folder a FROM/ADAPTER value names, if one exists there; else None."""
    path = Path(os.path.expanduser(value))
    if not path.is_absolute():
        path = folder / path
    return path.resolve() if path.exists() else None


def looks_like_path(value: str) -> bool:
    """A FROM meant as a file, not a model name: a missing one is an error, not a pull."""
    return value.startswith(_PATH_PREFIXES) or value.lower().endswith(_WEIGHT_SUFFIXES)


def requires_version(text: str) -> str:
    """REQUIRES' value (the minimum Ollama version) checked as Ollama checks it, without a `v`."""
    if not _SEMVER.fullmatch(text.strip()):
        raise ValueError(f"REQUIRES {text!r} is not a valid semantic version (e.g. 0.14.0)")
    return text.strip().removeprefix("v")


def _weights_file(path: Path, n: int) -> Path:
    """A GGUF file, or the one GGUF file of a folder."""
    if path.is_file():
        return _gguf(path, n)
    ggufs = sorted(p for p in path.iterdir() if p.suffix.lower() == ".gguf" and p.is_file())
    if not ggufs:
        raise ModelfileError(f"line {n}: {path} holds no .gguf file (only GGUF models can be "
                             "imported)")
    if len(ggufs) > 1:
        raise ModelfileError(f"line {n}: {path} holds several .gguf files "
                             f"({', '.join(p.name for p in ggufs)}): name one in FROM")
    return _gguf(ggufs[0], n)


def _gguf(path: Path, n: int) -> Path:
    """Refuse a file that is not a GGUF before anything hashes or uploads it."""
    try:
        with path.open("rb") as f:
            magic = f.read(4)
    except OSError as exc:
        raise ModelfileError(f"line {n}: cannot read {path}: {exc.strerror}") from exc
    if magic != b"GGUF":
        raise ModelfileError(f"line {n}: {path} is not a GGUF file (only GGUF models and "
                             "adapters can be imported)")
    return path


def _parameter(params: dict[str, Any], name: str, text: str, n: int) -> None:
    if not name:
        raise ModelfileError(f"line {n}: PARAMETER needs a name and a value")
    if name not in KNOWN_OPTIONS:
        raise ModelfileError(f"line {n}: unknown parameter {name!r}")
    if name == "stop":
        params.setdefault("stop", []).append(text)
        value: Any = params["stop"]
    else:
        value = params[name] = _typed(text)
    try:
        check_options({name: value})
    except OptionError as exc:
        raise ModelfileError(f"line {n}: {exc}") from exc


def _typed(text: str) -> Any:
    """Ollama's options are numbers or booleans (stop aside): the value as its JSON type."""
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            continue
    return text


def quote(value: str, always: bool = False) -> str:
    """The value as `parse` reads it back: bare when that is unambiguous, else in \"\"\"."""
    bare = value and value == value.strip() and "\n" not in value and not value.startswith('"')
    return value if bare and not always else f"{_TRIPLE}{value}{_TRIPLE}"


def render(weights: str, template: str | None = None, system: str | None = None,
           parameters: dict[str, Any] | None = None, adapters: list[str] | None = None,
           messages: list[dict[str, Any]] | None = None, license: str | None = None,
           requires: str | None = None) -> str:
    """A Modelfile that recreates a model with these parts."""
    lines = ['# Modelfile generated by "roost show"', f"FROM {weights}"]
    if requires:  # Ollama keeps it but does not print it; printed here so the round trip holds
        lines.append(f"REQUIRES {requires}")
    if template:
        lines.append(f"TEMPLATE {quote(template, always=True)}")
    if system:
        lines.append(f"SYSTEM {quote(system, always=True)}")
    for key, value in (parameters or {}).items():
        for one in value if isinstance(value, list) else [value]:
            lines.append(f"PARAMETER {key} {_parameter_text(one)}")
    lines += [f"ADAPTER {path}" for path in adapters or []]
    for message in messages or []:
        lines.append(f"MESSAGE {message.get('role', '')} {quote(str(message.get('content', '')))}")
    if license:
        lines.append(f"LICENSE {quote(license, always=True)}")
    return "\n".join(lines) + "\n"


def _parameter_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return quote(value) if isinstance(value, str) else str(value)
