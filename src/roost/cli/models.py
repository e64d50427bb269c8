"""Model management: pull, list, show, rm."""

from __future__ import annotations

import json
from typing import Any

import click

from roost.cli.common import connect, pull_with_progress
from roost.cli.main import handle_errors


@click.command()
@click.argument("model")
@click.option("--insecure", is_flag=True, help="Allow plain-HTTP registries.")
@handle_errors
def pull(model: str, insecure: bool) -> None:
    """Pull a model into the local store."""
    pull_with_progress(connect(), model, insecure)


@click.command(short_help="Push a model to a registry.")
@click.argument("model")
@click.option("--insecure", is_flag=True, help="Allow plain-HTTP registries.")
@handle_errors
def push(model: str, insecure: bool) -> None:
    """Push a model to the registry its name points at (host/namespace/model:tag)."""
    pull_with_progress(connect(), model, insecure, push=True)


@click.command()
@click.argument("source")
@click.argument("destination")
@handle_errors
def cp(source: str, destination: str) -> None:
    """Copy a model under a new name."""
    connect().copy(source, destination)
    click.echo(f"copied '{source}' to '{destination}'")


@click.command("list")
@click.argument("prefix", required=False)
@handle_errors
def list_models(prefix: str | None) -> None:
    """List models in the local store."""
    from roost.cli.render import human_bytes, human_since, table

    rows = [
        [m["name"], m["digest"][:12], human_bytes(m["size"]), human_since(m["modified_at"])]
        for m in connect().list()
        if not prefix or m["name"].startswith(prefix)
    ]
    table(rows, ["NAME", "ID", "SIZE", "MODIFIED"])


@click.command()
@click.argument("model")
@click.option("--license", "part", flag_value="license", help="Show the license.")
@click.option("--modelfile", "part", flag_value="modelfile", help="Show the Modelfile.")
@click.option("--parameters", "part", flag_value="parameters", help="Show the parameters.")
@click.option("--template", "part", flag_value="template", help="Show the template.")
@click.option("--system", "part", flag_value="system", help="Show the system message.")
@click.option("--json", "as_json", is_flag=True, help="Print the server's whole answer as JSON.")
@click.option("-v", "--verbose", is_flag=True, help="Show all the metadata and every tensor.")
@handle_errors
def show(model: str, part: str | None, as_json: bool, verbose: bool = False) -> None:
    """Show information about a model."""
    info = connect().show(model, verbose=verbose)
    if as_json:
        click.echo(json.dumps(info, indent=2))
    elif part:
        click.echo(info.get(part) or "")
    else:
        click.echo(_summary(info, verbose), nl=False)


def _short(value: Any, width: int = 10) -> str:
    """A metadata value in a narrow column: a long array as its first items and a count."""
    if not isinstance(value, list):
        return str(value).lower() if isinstance(value, bool) else str(value)
    shown: list[str] = []
    used = 1
    for item in value:
        cost = len(str(item)) + (2 if shown else 0)
        if shown and used + cost > width:
            break
        shown.append(str(item))
        used += cost
    more = f" ...+{len(value) - len(shown)} more" if len(shown) < len(value) else ""
    return f"[{' '.join(shown)}{more}]"


def _verbose_sections(info: dict) -> list[str]:
    mi = info.get("model_info") or {}
    out = ["", "  Metadata"] + [f"    {k:<40}{_short(mi[k])}" for k in sorted(mi)]
    tensors = info.get("tensors") or []
    if tensors:
        out += ["", "  Tensors"] + [f"    {t['name']:<40}{t['type']:<8}{_short(t['shape'], 80)}"
                                     for t in tensors]
    return out


def _summary(info: dict, verbose: bool = False) -> str:
    mi, details = info.get("model_info") or {}, info.get("details") or {}
    arch = mi.get("general.architecture", details.get("family", ""))
    rows = [
        ("architecture", arch),
        ("parameters", details.get("parameter_size", "")),
        ("context length", mi.get(f"{arch}.context_length", "")),
        ("embedding length", mi.get(f"{arch}.embedding_length", "")),
        ("quantization", details.get("quantization_level", "")),
        ("requires", info.get("requires", "")),
    ]
    out = ["  Model"] + [f"    {k:<20}{v}" for k, v in rows if v != ""]
    out += ["", "  Capabilities"] + [f"    {c}" for c in info.get("capabilities") or []]
    if verbose:
        out += _verbose_sections(info)
    for title, key in (("Parameters", "parameters"), ("System", "system"), ("License", "license")):
        text = (info.get(key) or "").strip()
        if text:
            lines = text.splitlines()[:2] if key == "license" else text.splitlines()
            out += ["", f"  {title}"] + [f"    {line}" for line in lines]
    return "\n".join(out) + "\n\n"


@click.command()
@click.argument("models", nargs=-1, required=True)
@handle_errors
def rm(models: tuple[str, ...]) -> None:
    """Remove models (unloading them first)."""
    client = connect()
    for model in models:
        client.unload(model)
        client.delete(model)
        click.echo(f"deleted '{model}'")


@click.group("models")
def models_group() -> None:
    """Cortex's spellings of the model commands: list, get, pull, start, stop, delete."""


@models_group.command("list")
@click.argument("prefix", required=False)
@click.pass_context
def models_list(ctx: click.Context, prefix: str | None) -> None:
    """List models in the local store (roost list)."""
    ctx.invoke(list_models, prefix=prefix)


@models_group.command("get")
@click.argument("model")
@click.pass_context
def models_get(ctx: click.Context, model: str) -> None:
    """Show a model as JSON (roost show --json)."""
    ctx.invoke(show, model=model, part=None, as_json=True)


@models_group.command("pull")
@click.argument("model")
@click.pass_context
def models_pull(ctx: click.Context, model: str) -> None:
    """Pull a model (roost pull)."""
    ctx.invoke(pull, model=model, insecure=False)


@models_group.command("start")
@click.argument("model")
@handle_errors
def models_start(model: str) -> None:
    """Load a model and keep it loaded for the keep_alive."""
    from roost.cli.common import ensure_model

    client = connect()
    ensure_model(client, model)
    client.load(model)
    click.echo(f"started '{model}'")


@models_group.command("stop")
@click.argument("model")
@handle_errors
def models_stop(model: str) -> None:
    """Unload a model (roost stop)."""
    connect().unload(model)
    click.echo(f"stopped '{model}'")


@models_group.command("delete")
@click.argument("models", nargs=-1, required=True)
@click.pass_context
def models_delete(ctx: click.Context, models: tuple[str, ...]) -> None:
    """Delete models (roost rm)."""
    ctx.invoke(rm, models=models)
