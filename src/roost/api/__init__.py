"""Roost's API: wire types and the typed HTTP client that the CLI and scripts share."""

from roost.api.client import Client, ConnectError, ResponseError

__all__ = ["Client", "ConnectError", "ResponseError"]
