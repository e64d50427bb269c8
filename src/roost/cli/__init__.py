"""The `roost` command line: a thin client over the HTTP API."""
