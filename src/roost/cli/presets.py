"""`roost presets`: saved settings (a system prompt and options), applied with `-p NAME`.

A preset file is flat YAML, as Cortex's: `system:` (or Cortex's `pre_prompt:`) plus generation
parameters, under Ollama's option names or Cortex's (`max_tokens`, `ctx_len`, `typ_p`). The
file is read here and sent as JSON; the server checks the options as it checks a request's.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from roost import preset_names
from roost.cli.common import connect
from roost.cli.main import handle_errors

SYSTEM_KEYS = ("system", "pre_prompt", "system_prompt", "system_message")  # pre_prompt: Cortex's
CORTEX_NAMES = {"max_tokens": "num_predict", "ctx_len": "num_ctx", "typ_p": "typical_p",
                "n_parallel": None, "stream": None, "engine": None, "model": None}


def from_mapping(data: Any) -> tuple[str, dict[str, Any]]:
    """(system prompt, options) from a preset's YAML mapping; a bad one raises UsageError."""
    from roost.core import KNOWN_OPTIONS, OptionError, check_options

    if not isinstance(data, dict):
        raise click.UsageError("a preset file holds a flat mapping of keys to values")
    given = [str(key) for key in data if str(key) in SYSTEM_KEYS]
    if len(given) > 1:
        raise click.UsageError(f"both {' and '.join(repr(k) for k in given)} are given: they all "
                               "mean the system prompt, keep one")
    system, options = "", {}
    for key, value in data.items():
        key = str(key)
        if key in SYSTEM_KEYS:
            system = str(value or "")
            continue
        name = CORTEX_NAMES.get(key, key)
        if name is None:
            continue  # Cortex's keys that mean nothing to a preset here
        if name not in KNOWN_OPTIONS:
            raise click.UsageError(f"unknown preset key '{key}'")
        options[name] = value
    try:
        check_options(options)
    except OptionError as exc:
        raise click.UsageError(str(exc)) from exc
    return system, options


def check_name(name: str) -> str:
    """The server's rule, said before asking it: a name with a `/` or only dots would not
    even reach the preset's URL."""
    why = preset_names.problem(name)
    if why:
        raise click.UsageError(why)
    return name


@click.group()
def presets() -> None:
    """Saved settings: a system prompt and options, for roost run/chat -p NAME."""


@presets.command("list")
@handle_errors
def list_presets() -> None:
    """List presets."""
    from roost.cli.render import table

    rows = [[p["name"], _short(p.get("system") or ""), json.dumps(p.get("options") or {})]
            for p in connect().presets()]
    table(rows, ["NAME", "SYSTEM", "OPTIONS"])


@presets.command("show")
@click.argument("name")
@handle_errors
def show(name: str) -> None:
    """Print a preset as YAML."""
    import yaml

    p = connect().preset(check_name(name))
    data = {**({"system": p["system"]} if p.get("system") else {}), **(p.get("options") or {})}
    click.echo(yaml.safe_dump(data, sort_keys=False, allow_unicode=True).rstrip())


@presets.command("create")
@click.argument("name")
@click.option("--from-file", "path", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="A flat YAML file: system: ... and options.")
@handle_errors
def create(name: str, path: Path) -> None:
    """Create (or replace) a preset from a YAML file."""
    import yaml

    check_name(name)
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise click.UsageError(f"cannot read {path}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise click.UsageError(f"{path} is not valid YAML: {str(exc).splitlines()[0]}") from exc
    system, options = from_mapping(data)
    connect().put_preset(name, system, options)
    click.echo(f"created preset '{name}'")


@presets.command("set")
@click.argument("name")
@click.argument("key")
@click.argument("value")
@handle_errors
def set_(name: str, key: str, value: str) -> None:
    """Set one key of a preset (system, or an option)."""
    from roost.cli.run import parse_value

    client = connect()
    p = client.preset(check_name(name))
    data = {"system": p.get("system") or "", **(p.get("options") or {})}
    if key in SYSTEM_KEYS:
        data["system"] = value
    else:
        data[key] = parse_value(value)
    system, options = from_mapping(data)
    client.put_preset(name, system, options)
    click.echo(f"set '{key}' in preset '{name}'")


@presets.command("rm")
@click.argument("name")
@handle_errors
def rm(name: str) -> None:
    """Delete a preset."""
    connect().delete_preset(check_name(name))
    click.echo(f"deleted preset '{name}'")


def _short(text: str, width: int = 40) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"
