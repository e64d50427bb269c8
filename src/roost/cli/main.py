"""The `roost` command group. Each command family lives in its own module.

Importing this must stay cheap: no server, engine or HTTP library is imported at module
level anywhere under roost.cli (a test checks).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

import click

from roost import __version__
from roost.config import ConfigError

F = TypeVar("F", bound=Callable[..., Any])


def handle_errors(fn: F) -> F:
    """One-line errors and Ollama's exit codes: 1 for any error, 130 for Ctrl+C."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from roost.api.autostart import NotRoost
        from roost.api.client import ConnectError, ResponseError

        try:
            return fn(*args, **kwargs)
        except KeyboardInterrupt:
            sys.stderr.write("\n")
            sys.exit(130)
        except (ResponseError, ConnectError, NotRoost) as exc:
            click.echo(f"Error: {exc}", err=True)
            sys.exit(1)

    return wrapper  # type: ignore[return-value]


@click.group(context_settings={"help_option_names": ["-h", "--help"]}, invoke_without_command=True,
             subcommand_metavar="COMMAND [ARGS]...")
@click.option("-v", "--version", is_flag=True, expose_value=False, is_eager=True,
              callback=lambda ctx, _param, value: _version(ctx) if value else None,
              help="Show the version (the server's too, when one answers).")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """Run language models on your own machine."""
    # Bare `roost` is a request for help, as with `ollama`: click's own no-args handling
    # raises a usage error, which main() would turn into exit 1.
    if ctx.invoked_subcommand is None:
        click.echo(ctx.get_help())


def _version(ctx: click.Context) -> None:
    """Ollama's `-v`: the running server's version, and the client's where it differs. It
    asks ROOST_HOST only; it never starts a server to answer."""
    if ctx.resilient_parsing:
        return
    from roost.api.autostart import NotRoost, server_version
    from roost.api.client import Client, ConnectError

    with Client(timeout=2) as client:
        try:
            server = server_version(client)
        except (ConnectError, NotRoost):  # nothing, or something else (Ollama), answers there
            server = ""
    if server:
        click.echo(f"roost version is {server}")
    else:
        click.echo("Warning: could not connect to a running Roost instance")
    if server != __version__:
        click.echo(f"Warning: client version is {__version__}")
    ctx.exit()


def _register() -> None:
    from roost.cli import chat, create, engines, models, presets, ps, run, serve, threads

    cli.add_command(run.run)
    cli.add_command(create.create)
    cli.add_command(chat.chat)
    cli.add_command(threads.threads)
    cli.add_command(engines.engines)
    cli.add_command(engines.configs)
    cli.add_command(presets.presets)
    cli.add_command(serve.serve)
    cli.add_command(serve.serve, name="start")  # Ollama's alias, and Cortex's name for it
    for command in (models.pull, models.push, models.cp, models.list_models, models.show,
                    models.rm):
        cli.add_command(command)
    cli.add_command(models.list_models, name="ls")
    cli.add_command(models.models_group)
    cli.add_command(ps.ps)
    cli.add_command(ps.stop)


_register()


def main() -> None:
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        sys.stderr.write("\n")
        sys.exit(130)
    except click.ClickException as exc:
        click.echo(f"Error: {exc.format_message()}", err=True)
        sys.exit(1)
    except ConfigError as exc:  # a bad ROOST_* value, found lazily inside any command
        click.echo(f"Error: {exc}", err=True)
        sys.exit(1)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except Exception as exc:  # a bug, but the user gets one line, not a traceback
        click.echo(f"Error: {type(exc).__name__}: {exc}", err=True)
        sys.exit(1)
