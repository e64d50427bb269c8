"""`roost run [options] [MODEL] [PROMPT]`: pull if missing, load, then answer or chat.

A prompt comes from the arguments, from piped standard input, or both (stdin first, as
Ollama does). With no prompt on a terminal (or with -c), the interactive shell opens. With
--truncate or --dimensions, or on a model that only embeds, the answer is the embedding: a
JSON array on stdout. Bad values are one line on stderr and exit 1.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from roost.cli.common import connect, ensure_model
from roost.cli.main import handle_errors

if TYPE_CHECKING:
    from roost.api.client import Client
    from roost.cli.session import Session, Settings

THINK_LEVELS = ("true", "false", "low", "medium", "high", "max")


class _RunCommand(click.Command):
    """`--think` alone means `--think=true`: its level is never taken from the next word,
    which is the model's name in `roost run --think MODEL`."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        fixed = []
        for i, arg in enumerate(args):
            nxt = args[i + 1] if i + 1 < len(args) else ""
            fixed.append("--think=true" if arg == "--think" and nxt not in THINK_LEVELS else arg)
        return super().parse_args(ctx, fixed)


@click.command(cls=_RunCommand)
@click.argument("model", required=False)
@click.argument("prompt", nargs=-1)
@click.option("-c", "--chat", "chat", is_flag=True, help="Load the model, then open the chat shell.")
@click.option("-t", "--thread", "thread", metavar="ID", help="Continue a saved thread (roost threads list).")
@click.option("-p", "--preset", metavar="NAME", help="Apply a saved preset (roost presets list).")
@click.option("--format", "fmt", metavar="json|SCHEMA",
              help='Response format: "json", or a JSON schema inline or in a file.')
@click.option("--keepalive", metavar="DURATION", help='How long the model stays loaded ("5m", "-1").')
@click.option("--system", metavar="TEXT", help="System prompt for this run.")
@click.option("-o", "--option", "options", multiple=True, metavar="NAME=VALUE",
              help="A model option (num_ctx=8192, temperature=0, stop=...); repeatable.")
@click.option("--think", type=click.Choice(THINK_LEVELS), metavar="LEVEL",
              help="Let a thinking model think: true, false, low, medium, high or max.")
@click.option("--hidethinking", is_flag=True, help="Do not print the thinking of a model that thinks.")
@click.option("--verbose", is_flag=True, help="Print timings after each response.")
@click.option("--nowordwrap", is_flag=True, help="Do not wrap long lines.")
@click.option("--insecure", is_flag=True, help="Allow a plain-HTTP registry for the pull.")
@click.option("--truncate/--no-truncate", default=None,
              help="Embeddings: cut an input longer than the context (else refuse it).")
@click.option("--dimensions", type=click.IntRange(min=1), help="Embeddings: keep this many dimensions.")
@click.option("--experimental", is_flag=True, help="Agent loop: the model may run tools you approve.")
@click.option("--experimental-websearch", is_flag=True, help="Agent loop: also a web search tool.")
@click.option("--experimental-yolo", is_flag=True, help="Agent loop: run tools without asking.")
@handle_errors
def run(model: str | None, prompt: tuple[str, ...], chat: bool, thread: str | None,
        preset: str | None, fmt: str | None,
        keepalive: str | None, system: str | None, options: tuple[str, ...], think: str | None,
        hidethinking: bool, verbose: bool, nowordwrap: bool, insecure: bool,
        truncate: bool | None, dimensions: int | None, experimental: bool,
        experimental_websearch: bool, experimental_yolo: bool) -> None:
    """Run a model: answer PROMPT, or chat when none is given."""
    from roost.cli.session import Session, Settings

    settings = Settings(options=parse_options(options), system=system, format=parse_format(fmt),
                        think=parse_think(think), hide_thinking=hidethinking,
                        keepalive=check_keepalive(keepalive), verbose=verbose,
                        wordwrap=not nowordwrap)
    terminal = sys.stdin.isatty() and sys.stdout.isatty()
    if chat and not terminal:
        raise click.UsageError("-c/--chat opens the chat shell, which needs a terminal")
    client = connect()
    if preset:
        apply_preset(client, preset, settings)
    if thread:
        model, prompt = _thread_model(client, thread, model, prompt)
    text = _prompt_text(prompt)
    model = model or _choose_model(client, terminal)
    if model is None:  # left the picker: nothing was asked
        return
    ensure_model(client, model, insecure)
    if truncate is not None or dimensions is not None or _embeds_only(client, model):
        _embed(client, model, text, truncate, dimensions, keepalive)
        return
    session = Session(client, model, settings)
    if thread:
        session.resume(thread)
    if not sys.stdout.isatty() or not sys.stdin.isatty():
        settings.wordwrap = False
    if experimental or experimental_websearch or experimental_yolo:
        from roost.cli.agent import run_agent

        run_agent(session, text, websearch=experimental_websearch, yolo=experimental_yolo)
        return
    if (text or not terminal) and not chat:
        session.ask(text)
        return
    _open_shell(session, text)


def _open_shell(session: Session, first: str) -> None:
    """The shell; its chat is saved as a thread, whose id is said when it closes."""
    from roost.cli.shell import run_shell

    session.load()
    _print_history(session)
    session.save = True
    try:
        if first:
            session.ask(first)
        run_shell(session)
    finally:
        if session.thread_id:
            sys.stderr.write(f"thread: {session.thread_id} (roost run -t {session.thread_id} resumes it)\n")


def apply_preset(client: Client, name: str, settings: Settings) -> None:
    """A preset's system prompt and options, under what the command line says itself."""
    from roost.cli.presets import check_name

    preset = client.preset(check_name(name))
    settings.system = settings.system or preset.get("system") or None
    settings.options = {**(preset.get("options") or {}), **settings.options}


def _thread_model(client: Client, thread: str, model: str | None,
                  prompt: tuple[str, ...]) -> tuple[str | None, tuple[str, ...]]:
    """`roost run -t ID [PROMPT]` runs the thread's model; a first word that names no model
    in the store is the prompt's beginning, not a model to pull."""
    from roost.api.client import ResponseError

    saved = client.thread(thread).get("model") or None
    if model is None or saved is None:
        return model or saved, prompt
    try:
        client.show(model)
    except ResponseError as exc:
        if exc.status not in (400, 404):  # not a model's name at all, or not in the store
            raise
        return saved, (model, *prompt)
    return model, prompt


def _print_history(session: Session) -> None:
    """The Modelfile's MESSAGE layers (a saved conversation) open the chat, as Ollama shows them."""
    from roost.cli.answer import AnswerPrinter
    from roost.cli.render import wrap_width

    width = wrap_width(not session.settings.wordwrap)
    saved = session.client.show(session.model).get("messages") or []
    for message in [*saved, *session.messages]:  # the Modelfile's, then a resumed thread's
        role = message.get("role")
        if role == "user":
            sys.stdout.write(f">>> {message.get('content') or ''}\n")
        elif role == "assistant":
            printer = AnswerPrinter(sys.stdout, width, session.settings.hide_thinking)
            printer.chunk(message)
            printer.close()
            sys.stdout.write("\n")


def _prompt_text(prompt: tuple[str, ...]) -> str:
    text = " ".join(prompt)
    if not sys.stdin.isatty():
        stdin_text = sys.stdin.read()
        text = f"{stdin_text}\n\n{text}" if text and stdin_text else (stdin_text or text)
    return text


def _choose_model(client: Client, terminal: bool) -> str | None:
    """A model from the store, picked on the terminal; None when the user leaves (q, Esc),
    which is no error. Ctrl+C there is still an interrupt (exit 130)."""
    names = [m["name"] for m in client.list()]
    if not terminal:
        raise click.UsageError("no model given: name one, as in `roost run MODEL`")
    if not names:
        raise click.UsageError("no models in the store yet: `roost run qwen2.5-coder:0.5b` pulls one")
    from prompt_toolkit.key_binding import KeyBindings
    from prompt_toolkit.shortcuts import choice

    keys = KeyBindings()

    @keys.add("escape", eager=True)
    @keys.add("q")
    def _leave(event: Any) -> None:
        event.app.exit(result=None)

    picked = choice("Select a model (Enter to run it, Esc or q to leave):",
                    options=[(n, n) for n in names], key_bindings=keys)
    return str(picked) if picked else None


def _embeds_only(client: Client, model: str) -> bool:
    caps = client.show(model).get("capabilities") or []
    return "embedding" in caps and "completion" not in caps


def _embed(client: Client, model: str, text: str, truncate: bool | None,
           dimensions: int | None, keepalive: str | None) -> None:
    vectors = client.embed(model, text, truncate=truncate, dimensions=dimensions, keep_alive=keepalive)
    sys.stdout.write(json.dumps(vectors[0] if vectors else []) + "\n")


def parse_options(pairs: tuple[str, ...] | list[str]) -> dict[str, Any]:
    """NAME=VALUE pairs as Ollama options, checked as the server checks them."""
    from roost.core import OptionError, check_options

    options: dict[str, Any] = {}
    for pair in pairs:
        name, sep, raw = pair.partition("=")
        if not sep or not name.strip():
            raise click.BadParameter(f"{pair!r} is not NAME=VALUE", param_hint="-o/--option")
        value = parse_value(raw)
        name = name.strip()
        if name == "stop":
            options.setdefault("stop", []).extend(value if isinstance(value, list) else [str(raw)])
        else:
            options[name] = value
    try:
        check_options(options)
    except OptionError as exc:
        raise click.BadParameter(str(exc), param_hint="-o/--option") from exc
    return options


def parse_value(raw: str) -> Any:
    """A number, true/false or JSON where the text is one, else the text itself."""
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def parse_format(fmt: str | None) -> Any:
    if not fmt or fmt == "json":
        return fmt or None
    text = fmt
    if not fmt.lstrip().startswith("{"):
        try:
            text = Path(fmt).read_text()
        except OSError as exc:
            raise click.BadParameter(f'must be "json", a JSON schema, or a schema file ({exc.strerror})',
                                     param_hint="--format") from exc
    try:
        schema = json.loads(text)
    except ValueError as exc:
        raise click.BadParameter("must be \"json\" or a JSON schema", param_hint="--format") from exc
    if not isinstance(schema, dict):
        raise click.BadParameter("a JSON schema is an object", param_hint="--format")
    return schema


def parse_think(think: str | None) -> bool | str | None:
    """No --think leaves `think` unset: the server lets a thinking model think and asks
    nothing of one that cannot, as Ollama's CLI does; --hidethinking changes only the printing."""
    if think is None:
        return None
    return {"true": True, "false": False}.get(think, think)


def check_keepalive(value: str | None) -> str | None:
    from roost.durations import parse_duration

    if value is not None:
        try:
            parse_duration(value)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--keepalive") from exc
    return value
