"""Run the server on uvicorn at ROOST_HOST.

The listening socket is bound here, not by uvicorn, so that a taken port is one clear line
and exit 1 (uvicorn logs the OSError and exits 3), and there is no window between a check and
the bind: the socket that was checked is the one uvicorn serves on.

SIGTERM and Ctrl+C stop it gracefully (server.drain): no new connections, answers in flight
get ROOST_DRAIN_TIMEOUT to finish, then every runner stops and the process exits 0. A
second Ctrl+C ends the answers at once.
"""

from __future__ import annotations

import errno
import logging
import signal
import socket
import sys
import warnings
from types import FrameType

import uvicorn
from fastapi import FastAPI
from pydantic.warnings import UnsupportedFieldAttributeWarning

from roost import config
from roost.server.app import create_app
from roost.server.security import is_loopback

BACKLOG = 2048  # uvicorn's default
# Past the drain time, how long the server waits for answers ended by the drain to close
# before uvicorn cancels whatever is left.
DRAIN_GRACE = 5.0


class BindError(OSError):
    """The address in ROOST_HOST cannot be listened on; str() says why in one line."""

    def __str__(self) -> str:
        return str(self.strerror)


def bind(host: str, port: int) -> socket.socket:
    """A socket bound and listening at host:port, set up the way uvicorn's own bind does.

    listen() is called here too: with SO_REUSEADDR two processes may both bind a port that
    no one listens on yet, and only the listen decides which of them owns it, so a server
    that gets its socket back from here is the one that holds the port.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(BACKLOG)
    except OSError as exc:
        sock.close()
        raise BindError(exc.errno, _bind_message(host, port, exc)) from exc
    return sock


def _bind_message(host: str, port: int, exc: OSError) -> str:
    shown = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    hint = "set ROOST_HOST to use another address"
    if exc.errno == errno.EADDRINUSE:
        return f"port {port} is in use; is Roost or Ollama already running? {hint}"
    if exc.errno == errno.EACCES:
        return f"no permission to listen on {shown} (ports below 1024 need privileges); {hint}"
    reason = exc.strerror or str(exc)
    if isinstance(exc, socket.gaierror):
        reason = f"cannot resolve {host!r} ({reason})"
    return f"cannot listen on {shown}: {reason}; {hint}"


def _check_exposure(host: str) -> None:
    """Refuse to serve the network without a key, unless the user says so in as many words."""
    if is_loopback(host) or config.api_key() or config.allow_unauthenticated():
        return
    raise config.ConfigError(
        f"refusing to listen on {host} without an API key: anyone on the network could use "
        f"this server. Set ROOST_API_KEY (or write a key to {config.home() / config.KEY_FILE}, "
        "mode 0600), or set ROOST_ALLOW_UNAUTHENTICATED=1 to serve without one")


class _Server(uvicorn.Server):
    """uvicorn's server, stopping Roost's way: drain, then stop the runners, then exit 0."""

    def __init__(self, app: FastAPI, host: str, port: int, drain_timeout: float) -> None:
        super().__init__(uvicorn.Config(
            app, host=host, port=port, log_level="info", access_log=True,
            timeout_graceful_shutdown=int(drain_timeout + DRAIN_GRACE)))
        self.drain = app.state.drain
        self.drain_timeout = drain_timeout

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self.drain.begin(self.drain_timeout)
        if self.force_exit:
            self.drain.end_now()
        await super().shutdown(sockets)
        # After a second Ctrl+C uvicorn skips the app's shutdown (which stops the runners)
        # and leaves it to be cancelled, with a traceback in the log: run it here.
        done = getattr(self.lifespan, "shutdown_event", None)
        if self.force_exit and done is not None and not done.is_set():
            await self.lifespan.shutdown()

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        super().handle_exit(sig, frame)
        if self.force_exit:
            self.drain.end_now()


def run_server() -> None:
    # FastAPI 0.165 passes `alias` to pydantic 2.14 in a way it warns about for every body
    # parameter; the warning is about FastAPI's internals, not Roost's models.
    warnings.filterwarnings("ignore", category=UnsupportedFieldAttributeWarning)
    try:
        host, port = config.host_port()
        _check_exposure(host)
        sock = bind(host, port)
    except (config.ConfigError, BindError) as exc:
        print(f"Error: {exc}", file=sys.stderr)
        sys.exit(1)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    server = _Server(create_app(bind_host=host), host, port, config.drain_timeout())
    _stop_on_signals(server)
    # uvicorn logs its address only when it binds itself; say it here instead.
    shown = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    logging.getLogger("uvicorn.error").info("Roost listening on http://%s (Press CTRL+C to quit)", shown)
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:
        pass
    finally:
        sock.close()
    if not server.started:  # the app's startup failed; uvicorn has logged why
        sys.exit(1)


def _stop_on_signals(server: uvicorn.Server) -> None:
    """SIGTERM and SIGINT ask the server to stop, also before and after uvicorn listens for them.

    While serving, uvicorn handles them itself; afterwards it restores the handlers it found
    and raises the signal again, which with the default SIGTERM handler kills the process
    (exit -15 after a clean stop). Set here, the handler it finds and calls only asks again.
    """
    def stop(signum: int, frame: FrameType | None) -> None:
        server.should_exit = True

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, stop)
