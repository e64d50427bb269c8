"""`roost chat [MODEL] [MESSAGE]`: Cortex's chat, where every conversation is a saved thread.

Without -t a new thread is made for the conversation and its id said on stderr, so a script
can go on with `roost chat -t ID`; with -t the thread's messages are the context and the new
turn is stored. With no message (or -a) the chat shell opens on the thread.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import click

from roost.cli.common import connect, ensure_model
from roost.cli.main import handle_errors

if TYPE_CHECKING:
    from roost.api.client import Client


@click.command()
@click.argument("model", required=False)
@click.argument("words", nargs=-1)
@click.option("-m", "--message", help="The message to send (else the arguments, or piped stdin).")
@click.option("-t", "--thread", "thread", metavar="ID", help="Continue this thread.")
@click.option("-a", "--attach", is_flag=True, help="Open the chat shell on the thread.")
@click.option("-p", "--preset", metavar="NAME", help="Apply a saved preset (roost presets list).")
@handle_errors
def chat(model: str | None, words: tuple[str, ...], message: str | None, thread: str | None,
         attach: bool, preset: str | None) -> None:
    """Chat with a model, keeping the conversation as a thread."""
    from roost.cli.run import _open_shell, _prompt_text, apply_preset
    from roost.cli.session import Session, Settings

    client = connect()
    known = client.thread(thread) if thread else {}
    model = model or known.get("model") or _running_model(client)
    ensure_model(client, model)
    session = Session(client, model, Settings())
    if preset:
        apply_preset(client, preset, session.settings)
    session.save = True
    if thread:
        session.resume(thread)
    text = message if message is not None else _prompt_text(words)
    if attach or (not text and sys.stdin.isatty() and sys.stdout.isatty()):
        _open_shell(session, text)
        return
    if not text:
        raise click.UsageError("no message: give one (-m TEXT, an argument, or stdin)")
    session.settings.wordwrap = sys.stdout.isatty()
    session.ask(text)
    if not thread and session.thread_id:
        sys.stderr.write(f"thread: {session.thread_id}\n")


def _running_model(client: Client) -> str:
    """No model named: one of those loaded now, as Cortex's chat offers them."""
    names = [m["name"] for m in client.ps()]
    if len(names) == 1:
        return str(names[0])
    if not names:
        raise click.UsageError("no model is running: name one, as in `roost chat MODEL`")
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        raise click.UsageError(f"several models are running ({', '.join(names)}): name one")
    from prompt_toolkit.shortcuts import choice

    return str(choice("Select a running model:", options=[(n, n) for n in names]))
