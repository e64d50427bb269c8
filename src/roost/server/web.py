"""The chat page on the API's own port: `/` for a browser, `/web/...` for its files.

Scripts that check `/` keep their plain status line; only a client that asks for HTML (a
browser navigating) gets the page. Every file goes out under a strict Content-Security-Policy,
so even if a model's output slipped past the page's sanitizer it could run no script and load
nothing from another host. The files need no API key (a page must load before it can ask for
one); every API call the page then makes does.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse, Response

from roost.web import STATIC

router = APIRouter(tags=["web"])

CSP = "; ".join((
    "default-src 'self'", "script-src 'self'", "style-src 'self'", "img-src 'self' data:",
    "connect-src 'self'", "font-src 'self'", "object-src 'none'", "base-uri 'none'",
    "form-action 'self'", "frame-ancestors 'none'",
))
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",  # revalidate, so an upgraded Roost serves its own page
}
_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}


def wants_html(accept: str) -> bool:
    """A browser's navigation names text/html; curl's `*/*` and scripts' JSON do not."""
    return any(part.split(";", 1)[0].strip().lower() == "text/html" for part in accept.split(","))


@router.get("/", response_class=PlainTextResponse, responses={
    200: {"description": "`Roost is running`, or the chat page when Accept names text/html",
          "content": {"text/html": {}}}})
@router.head("/", include_in_schema=False)  # one documented operation per path and name
async def root(request: Request) -> Response:
    if wants_html(request.headers.get("accept", "")):
        return _file(STATIC / "index.html")
    return PlainTextResponse("Roost is running", headers={"Vary": "Accept"})


@router.api_route("/web/{path:path}", methods=["GET", "HEAD"], include_in_schema=False)
async def static_file(path: str) -> Response:
    file = _resolve(path)
    if file is None:
        return JSONResponse({"error": "not found"}, status_code=404, headers=SECURITY_HEADERS)
    return _file(file)


def _resolve(path: str) -> Path | None:
    """A file under static/ of a type the page uses; no dot-names, nothing outside the folder."""
    parts = path.split("/")
    if not path or any(not p or p.startswith(".") or "\\" in p for p in parts):
        return None
    file = STATIC.joinpath(*parts)
    if file.suffix not in _TYPES or not file.is_file():
        return None
    if not file.resolve().is_relative_to(STATIC.resolve()):
        return None
    return file


def _file(file: Path) -> Response:
    headers = {**SECURITY_HEADERS, "Vary": "Accept"}
    return FileResponse(file, media_type=_TYPES[file.suffix], headers=headers)
