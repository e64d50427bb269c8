"""What every command needs: a client with the server running, and pull-if-missing."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from roost.api.client import Client


def connect() -> Client:
    from roost.api.autostart import ensure_server
    from roost.api.client import Client

    client = Client()
    ensure_server(client)
    return client


def pull_with_progress(client: Client, model: str, insecure: bool = False,
                       push: bool = False) -> None:
    from roost.api.client import ResponseError
    from roost.cli.render import PullProgress

    events = client.push(model, insecure) if push else client.pull(model, insecure)
    last: dict[str, Any] = {}
    with PullProgress() as progress:
        for last in events:
            progress.update(last)
    if last.get("status") != "success":  # a stream that stopped short is a failure, never exit 0
        verb = "push" if push else "pull"
        raise ResponseError(f"the {verb} of {model} ended before it finished "
                            f"(last step: {last.get('status') or 'none'})", 500)


def ensure_model(client: Client, model: str, insecure: bool = False) -> None:
    """Ollama's run: if the server does not know the model, pull it first."""
    from roost.api.client import ResponseError

    try:
        client.show(model)
    except ResponseError as exc:
        if exc.status != 404:
            raise
        pull_with_progress(client, model, insecure)
