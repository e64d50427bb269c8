"""`roost threads list|show|rm|rename`: the saved conversations, through the server's API."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime

import click

from roost.cli.common import connect
from roost.cli.main import handle_errors


@click.group()
def threads() -> None:
    """Saved conversations (roost chat, and every chat shell)."""


@threads.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the threads as JSON.")
@handle_errors
def list_threads(as_json: bool) -> None:
    """List threads, most recently updated first."""
    from roost.cli.render import human_since, table

    found = sorted(connect().threads(), key=lambda t: t.get("updated_at", 0), reverse=True)
    if as_json:
        click.echo(json.dumps(found, indent=2))
        return
    rows = [[t["id"], _short(t.get("title") or ""), t.get("model") or "", str(t.get("message_count", "")),
             human_since(datetime.fromtimestamp(t.get("updated_at", 0), UTC).isoformat())]
            for t in found]
    table(rows, ["ID", "TITLE", "MODEL", "MESSAGES", "UPDATED"])


@threads.command("show")
@click.argument("thread_id")
@handle_errors
def show(thread_id: str) -> None:
    """Print a thread's messages."""
    client = connect()
    thread = client.thread(thread_id)
    click.echo(f"{thread.get('title') or thread_id}  ({thread.get('model') or 'no model'})\n")
    for m in client.messages(thread_id):
        text = "".join(p["text"]["value"] for p in m["content"] if p.get("type") == "text")
        mark = "" if m.get("status") == "completed" else " (incomplete)"
        prefix = ">>> " if m["role"] == "user" else ""
        sys.stdout.write(f"{prefix}{text}{mark}\n" + ("" if m["role"] == "user" else "\n"))


@threads.command("rm")
@click.argument("thread_ids", nargs=-1, required=True)
@handle_errors
def rm(thread_ids: tuple[str, ...]) -> None:
    """Delete threads."""
    client = connect()
    for thread_id in thread_ids:
        client.delete_thread(thread_id)
        click.echo(f"deleted '{thread_id}'")


@threads.command("rename")
@click.argument("thread_id")
@click.argument("title")
@handle_errors
def rename(thread_id: str, title: str) -> None:
    """Give a thread a new title."""
    connect().update_thread(thread_id, title=title)
    click.echo(f"renamed '{thread_id}'")


def _short(text: str, width: int = 40) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"
