"""Loaded models: ps and stop."""

from __future__ import annotations

import click

from roost.cli.common import connect
from roost.cli.main import handle_errors


@click.command()
@click.argument("prefix", required=False)
@handle_errors
def ps(prefix: str | None) -> None:
    """List loaded models."""
    from roost.cli.render import human_bytes, human_until, table

    rows = []
    for m in connect().ps():
        if prefix and not m["name"].startswith(prefix):
            continue
        size, vram = m.get("size", 0), m.get("size_vram", 0)
        rows.append([m["name"], m["digest"][:12], human_bytes(size), _processor(size, vram),
                     str(m.get("context_length", "")), human_until(m["expires_at"])])
    table(rows, ["NAME", "ID", "SIZE", "PROCESSOR", "CONTEXT", "UNTIL"])


def _processor(size: int, vram: int) -> str:
    if vram == 0:
        return "100% CPU"
    if vram >= size:
        return "100% GPU"
    cpu = round(100 * (size - vram) / size)
    return f"{cpu}%/{100 - cpu}% CPU/GPU"


@click.command()
@click.argument("model")
@handle_errors
def stop(model: str) -> None:
    """Unload a running model."""
    connect().unload(model)
