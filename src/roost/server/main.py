"""Run the server on uvicorn at ROOST_HOST."""

from __future__ import annotations

import logging
import sys
import warnings

import uvicorn
from pydantic.warnings import UnsupportedFieldAttributeWarning

from roost import config
from roost.server.app import create_app


def run_server() -> None:
    # FastAPI 0.165 passes `alias` to pydantic 2.14 in a way it warns about for every body
    # parameter; the warning is about FastAPI's internals, not Roost's models.
    warnings.filterwarnings("ignore", category=UnsupportedFieldAttributeWarning)
    host, port = config.host_port()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = create_app(bind_host=host)
    try:
        uvicorn.run(app, host=host, port=port, log_level="info", access_log=True)
    except OSError as exc:  # the port is taken
        print(f"Error: could not listen on {host}:{port}: {exc.strerror}", file=sys.stderr)
        sys.exit(1)
