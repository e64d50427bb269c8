"""Threads, messages and presets: the server's SQLite store."""
