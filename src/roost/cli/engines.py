"""`roost engines` and `roost configs`: remote engines and their keys, through the server's API.

A key typed on the command line goes to the server and is stored there (mode 0600); no
command prints one whole.
"""

from __future__ import annotations

import click

from roost.cli.common import connect
from roost.cli.main import handle_errors


@click.group()
def engines() -> None:
    """Engines: llama-cpp (local) and OpenAI-compatible endpoints (use MODEL:NAME)."""


@engines.command("list")
@handle_errors
def list_engines() -> None:
    """List engines."""
    from roost.cli.render import table

    rows = [[e["name"], e["type"], e.get("url") or "", e.get("api_key") or ""]
            for e in connect().engines()]
    table(rows, ["NAME", "TYPE", "URL", "KEY"])


@engines.command("add")
@click.argument("name")
@click.option("--url", required=True, help="The endpoint's base URL, e.g. https://api.openai.com/v1")
@click.option("--api-key", default="", help="Its API key (or: roost configs set NAME_api_key KEY).")
@handle_errors
def add(name: str, url: str, api_key: str) -> None:
    """Add (or replace) a remote engine; its models are then MODEL:NAME."""
    engine = connect().add_engine(name, url, api_key)
    click.echo(f"added engine '{engine['name']}' at {engine['url']}")


@engines.command("rm")
@click.argument("name")
@handle_errors
def rm(name: str) -> None:
    """Remove a remote engine."""
    connect().delete_engine(name)
    click.echo(f"removed engine '{name}'")


@click.group()
def configs() -> None:
    """Server settings kept by the server: engines' API keys (NAME_api_key) and tokens."""


@configs.command("list")
@handle_errors
def list_configs() -> None:
    """List settings (secrets shown as sk-…1234)."""
    from roost.cli.render import table

    table([[k, v] for k, v in connect().configs().items()], ["KEY", "VALUE"])


@configs.command("get")
@click.argument("key")
@handle_errors
def get(key: str) -> None:
    """Show one setting (masked)."""
    values = connect().configs()
    if key not in values:
        raise click.UsageError(f"'{key}' is not set")
    click.echo(values[key])


@configs.command("set")
@click.argument("key")
@click.argument("value")
@handle_errors
def set_(key: str, value: str) -> None:
    """Set a setting (an empty VALUE removes it)."""
    connect().set_config(key, value)
    click.echo(f"set '{key}'")
