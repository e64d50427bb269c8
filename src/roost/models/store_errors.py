"""The store's errors, apart from the store so that its helpers can raise them too."""

from __future__ import annotations


class StoreError(Exception):
    """A store operation failed; nothing under a final name was changed."""


class DigestMismatch(StoreError):
    pass


class Cancelled(StoreError):
    """Everyone who wanted a download went away; what it wrote is kept for a resume."""


__all__ = ["Cancelled", "DigestMismatch", "StoreError"]
