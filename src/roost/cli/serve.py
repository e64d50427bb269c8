"""`roost serve`: run the API server in the foreground."""

from __future__ import annotations

import click

from roost import config


def _env_help() -> str:
    rows = "\n".join(f"  {s.name:<26} {s.description} (default: {s.default or 'unset'})"
                     for s in config.SETTINGS)
    return f"Start the Roost server.\n\n\b\nEnvironment variables:\n{rows}"


@click.command(help=_env_help())
def serve() -> None:
    from roost.server.main import run_server

    run_server()
