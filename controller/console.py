"""The web console at ``/console``: three hand-written files shipped in the package
(``console_static/``), served as they are, with no build step and no external origin.

They are public and hold no data: the page asks the operator for a token and reads
everything through the JSON API with it, so the console adds no authority. Every answer
carries a Content-Security-Policy that allows only this origin's script, style and API
(no inline script, no other origin), and may not be framed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from aiohttp import web

from common.errors import NotFound
from common.problem import meet_expectation, problem_handler

CONSOLE_DIR: Final = Path(__file__).parent / "console_static"
PAGE: Final = "index.html"
# What the page loads besides itself, by the name in its URL (/console/<name>).
ASSETS: Final = frozenset({"console.js", "console.css"})
# Named here, not guessed from the system's MIME table (which differs between hosts).
MEDIA_TYPES: Final = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
}
CONTENT_SECURITY_POLICY: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS: Final = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # A new release's files are fetched again; an unchanged file costs a 304.
    "Cache-Control": "no-cache",
}


def _file(name: str) -> web.FileResponse:
    path = CONSOLE_DIR / name
    headers = {**SECURITY_HEADERS, "Content-Type": MEDIA_TYPES[path.suffix]}
    return web.FileResponse(path, headers=headers)


async def console_page(_request: web.Request) -> web.StreamResponse:
    return _file(PAGE)


async def console_asset(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    if name not in ASSETS:
        raise NotFound("The console has no such file.")
    return _file(name)


def add_console_routes(app: web.Application) -> None:
    """Serve the console page at ``/console`` and its script and style beside it."""
    app.router.add_get(
        "/console", problem_handler(console_page), name="console", expect_handler=meet_expectation
    )
    app.router.add_get(
        "/console/{name}",
        problem_handler(console_asset),
        name="console-asset",
        expect_handler=meet_expectation,
    )
