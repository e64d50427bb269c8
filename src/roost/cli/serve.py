"""`roost serve`: run the API server in the foreground."""

from __future__ import annotations

import click

from roost import config


def _env_help() -> str:
    """The settings table, aligned and wrapped to fit 100 columns (click keeps a \\b block as is)."""
    import textwrap

    width = max(len(s.name) for s in config.SETTINGS) + 4
    rows = []
    for s in config.SETTINGS:
        text = f"{s.description} (default: {s.default or 'unset'})"
        lines = textwrap.wrap(text, 96 - width) or [""]
        rows.append(f"  {s.name:<{width - 2}}{lines[0]}")
        rows += [" " * width + line for line in lines[1:]]
    return "Start the Roost server.\n\n\b\nEnvironment variables:\n" + "\n".join(rows)


@click.command(help=_env_help())
def serve() -> None:
    from roost.server.main import run_server

    run_server()
