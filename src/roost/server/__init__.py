"""The HTTP server: one app, one router per API dialect."""
