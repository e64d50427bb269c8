"""The chat page's static files, shipped inside the package so a user never runs a build step.

`static/` holds the page (plain JS modules) and the vendored, pinned markdown renderer and
sanitizer (web/package-lock.json at the repository root records their versions).
"""

from __future__ import annotations

from pathlib import Path

STATIC = Path(__file__).parent / "static"

__all__ = ["STATIC"]
