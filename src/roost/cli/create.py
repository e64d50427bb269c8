"""`roost create NAME [-f Modelfile] [-q TYPE] [--link]`: a model from a Modelfile, as Ollama's.

As with Ollama, the Modelfile is parsed here, not on the server: each local GGUF it names
(FROM, ADAPTER) is hashed, offered to the server by digest, and sent only if the server
lacks it, or with --link handed over by path, so the server links the file in place instead
of storing a copy. Then the structured /api/create goes out and its status lines are shown.
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from roost.cli.common import connect
from roost.cli.main import handle_errors

if TYPE_CHECKING:
    from roost.api.client import Client
    from roost.cli.render import PullProgress
    from roost.models.modelfile import Modelfile

_CHUNK = 1 << 20


@click.command(short_help="Create a model from a Modelfile.")
@click.argument("name")
@click.option("-f", "--file", "path", metavar="MODELFILE",
              help="The Modelfile (default: ./Modelfile, else FROM the current folder).")
@click.option("-q", "--quantize", metavar="TYPE", help="Quantize the weights, e.g. Q4_K_M.")
@click.option("--link", is_flag=True,
              help="Import GGUF files in place (a hard link, else a path checked at load) "
                   "instead of copying them into the store.")
@handle_errors
def create(name: str, path: str | None, quantize: str | None, link: bool) -> None:
    """Create model NAME from a Modelfile: FROM a model, a GGUF file or a folder holding one,
    with PARAMETER, TEMPLATE, SYSTEM, ADAPTER, LICENSE and MESSAGE lines."""
    parsed = _read(path)
    _say("gathering model components")
    client = connect()
    fields: dict[str, Any] = parsed.request_fields()
    if parsed.weights is not None:
        fields["files"] = {parsed.weights.name: _blob(client, parsed.weights, link)}
    if parsed.adapters:
        fields["adapters"] = {p.name: _blob(client, p, link) for p in parsed.adapters}
    if quantize:
        fields["quantize"] = quantize
    with _progress() as progress:
        for event in client.create_progress(name, **fields):
            progress.update(event)


def _progress() -> PullProgress:
    """The server's status lines, and a bar for a step that reports its size (a quantize).
    Lines such as "using existing layer sha256:..." are long: a terminal gets them unwrapped."""
    from roost.cli.render import PullProgress, use_color

    if not sys.stderr.isatty():
        return PullProgress()
    from rich.console import Console

    console = Console(file=sys.stderr, soft_wrap=True, highlight=False,
                      no_color=not use_color(sys.stderr))
    return PullProgress(console=console)


def _read(path: str | None) -> Modelfile:
    """The parsed Modelfile; none given and no ./Modelfile: `FROM .`, as Ollama does."""
    from roost.models.modelfile import ModelfileError, parse

    if path is None and not Path("Modelfile").is_file():
        text, folder = "FROM .", Path.cwd()
    else:
        file = Path(path or "Modelfile")
        try:
            text = file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
            raise click.ClickException(f"cannot read the Modelfile {file}: {reason}") from exc
        folder = file.resolve().parent
    try:
        return parse(text, folder)
    except ModelfileError as exc:
        raise click.ClickException(f"{path or 'Modelfile'}: {exc}") from exc


def _blob(client: Client, file: Path, link: bool) -> str:
    """Make sure the server holds `file` as a blob; return its digest."""
    size = file.stat().st_size
    with _bar(f"hashing {file.name}", size, transient=True) as advance:
        digest = _sha256(file, advance)
    if client.has_blob(digest):
        _say(f"using existing file {digest}")
    elif link:
        how = client.link_blob(digest, str(file))["link"]
        said = {"hardlink": "a hard link", "path": "by path, checked at every load"}
        _say(f"linking file {digest} ({said.get(how, how)})")
    else:
        with _bar(f"copying file {digest[:19]}", size) as advance:
            client.upload_blob(digest, file, advance)
        if not sys.stderr.isatty():
            _say(f"copying file {digest} 100%")
    return digest


def _sha256(file: Path, advance: Callable[[int], None]) -> str:
    hasher = hashlib.sha256()
    done = 0
    with file.open("rb") as f:
        while chunk := f.read(_CHUNK):
            hasher.update(chunk)
            done += len(chunk)
            advance(done)
    return f"sha256:{hasher.hexdigest()}"


@contextmanager
def _bar(label: str, total: int, transient: bool = False) -> Iterator[Callable[[int], None]]:
    """A progress bar on stderr when it is a terminal; nothing otherwise."""
    if not sys.stderr.isatty():
        yield lambda done: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TaskProgressColumn, TextColumn

    from roost.cli.render import use_color

    console = Console(file=sys.stderr, highlight=False, no_color=not use_color(sys.stderr))
    with Progress(TextColumn("{task.description}", markup=False), BarColumn(),
                  TaskProgressColumn(), DownloadColumn(), console=console,
                  transient=transient) as bar:
        task = bar.add_task(label, total=total)
        yield lambda done: bar.update(task, completed=done)


def _say(line: str) -> None:
    sys.stderr.write(line + "\n")
    sys.stderr.flush()
