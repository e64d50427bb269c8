"""`roost run MODEL [PROMPT]`: pull if missing, load, then answer one prompt or chat.

A prompt comes from the arguments, from piped standard input, or both (stdin first, as
Ollama does). With no prompt on a terminal, a minimal chat loop keeps the conversation
until /bye or Ctrl+D.
"""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any

import click

from roost.cli.common import connect, ensure_model
from roost.cli.main import handle_errors

if TYPE_CHECKING:
    from roost.api.client import Client


@click.command(context_settings={"ignore_unknown_options": False})
@click.argument("model")
@click.argument("prompt", nargs=-1)
@click.option("--format", "fmt", help='Response format: "json" or a JSON schema.')
@click.option("--keepalive", help='How long the model stays loaded (e.g. "5m", "-1").')
@click.option("--verbose", is_flag=True, help="Print timings after each response.")
@click.option("--nowordwrap", is_flag=True, help="Do not wrap long lines.")
@handle_errors
def run(model: str, prompt: tuple[str, ...], fmt: str | None, keepalive: str | None,
        verbose: bool, nowordwrap: bool) -> None:
    """Run a model: answer PROMPT, or chat when none is given."""
    text = " ".join(prompt)
    piped = not sys.stdin.isatty()
    if piped:
        stdin_text = sys.stdin.read()
        text = f"{stdin_text}\n\n{text}" if text and stdin_text else (stdin_text or text)
    client = connect()
    ensure_model(client, model)
    session = Session(client, model, _format(fmt), keepalive, verbose,
                      nowordwrap or piped)
    if text or piped or not sys.stdout.isatty():
        session.ask(text)
        return
    session.load()
    session.loop()


def _format(fmt: str | None) -> Any:
    if not fmt or fmt == "json":
        return fmt
    try:
        return json.loads(fmt)
    except ValueError as exc:
        raise click.BadParameter("must be \"json\" or a JSON schema", param_hint="--format") from exc


class Session:
    """One conversation with a model: messages so far, and how to print answers."""

    def __init__(self, client: Client, model: str, fmt: Any, keepalive: str | None,
                 verbose: bool, nowordwrap: bool) -> None:
        self.client = client
        self.model = model
        self.fmt = fmt
        self.keepalive = keepalive
        self.verbose = verbose
        self.nowordwrap = nowordwrap
        self.messages: list[dict[str, Any]] = []

    def load(self) -> None:
        self.client.load(self.model, self.keepalive)

    def ask(self, text: str) -> None:
        from roost.cli.render import WrapWriter, wrap_width

        self.messages.append({"role": "user", "content": text})
        out = WrapWriter(sys.stdout, wrap_width(self.nowordwrap))
        reply: list[str] = []
        final: dict[str, Any] = {}
        try:
            for chunk in self.client.chat(self.model, self.messages, format=self.fmt,
                                          keep_alive=self.keepalive):
                piece = (chunk.get("message") or {}).get("content", "")
                if piece:
                    reply.append(piece)
                    out.write(piece)
                if chunk.get("done"):
                    final = chunk
        finally:
            out.close()
        if reply and not "".join(reply).endswith("\n"):
            sys.stdout.write("\n")
        sys.stdout.flush()
        self.messages.append({"role": "assistant", "content": "".join(reply)})
        if self.verbose and final:
            _print_stats(final)

    def loop(self) -> None:
        while True:
            try:
                line = input(">>> ")
            except EOFError:
                sys.stdout.write("\n")
                return
            except KeyboardInterrupt:
                sys.stdout.write("\nUse Ctrl + d or /bye to exit.\n")
                continue
            text = line.strip()
            if not text:
                continue
            if text in ("/bye", "/exit"):
                return
            if text == "/clear":
                self.messages.clear()
                sys.stdout.write("Cleared session context\n")
                continue
            if text.startswith("/"):
                sys.stdout.write(f"Unknown command '{text.split()[0]}'. Type /? for help\n")
                continue
            try:
                self.ask(text)
            except KeyboardInterrupt:
                self.messages.pop()  # the unanswered question
                sys.stdout.write("\n")
            sys.stdout.write("\n")


def _print_stats(final: dict[str, Any]) -> None:
    def dur(ns: int) -> str:
        seconds = ns / 1e9
        return f"{seconds * 1000:.2f}ms" if seconds < 1 else f"{seconds:.3f}s"

    def rate(count: int, ns: int) -> str:
        return f"{count / (ns / 1e9):.2f} tokens/s" if ns else "n/a"

    pc, pd = final.get("prompt_eval_count", 0), final.get("prompt_eval_duration", 0)
    ec, ed = final.get("eval_count", 0), final.get("eval_duration", 0)
    rows = [
        ("total duration", dur(final.get("total_duration", 0))),
        ("load duration", dur(final.get("load_duration", 0))),
        ("prompt eval count", f"{pc} token(s)"),
        ("prompt eval duration", dur(pd)),
        ("prompt eval rate", rate(pc, pd)),
        ("eval count", f"{ec} token(s)"),
        ("eval duration", dur(ed)),
        ("eval rate", rate(ec, ed)),
    ]
    for name, value in rows:
        sys.stderr.write(f"{name + ':':<22}{value}\n")
