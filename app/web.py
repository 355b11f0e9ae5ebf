"""The web console at `/console` and GraphiQL's page, both from the files in app/console.

The console is static files (HTML, CSS, ES modules and the vendored libraries, see
frontend/) that talk to the public `/graphql` endpoint like any other client; nothing here
reads a record. Every page goes out with a Content-Security-Policy that lets scripts,
styles and connections come from this server alone: no inline script (the console's one
inline element, its import map, is allowed by its hash), no other host.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Iterable
from pathlib import Path

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

CONSOLE_DIR = Path(__file__).resolve().parent / "console"
GRAPHIQL_PAGE = CONSOLE_DIR / "graphiql.html"
_INLINE_SCRIPT = re.compile(r"<script(?![^>]*\bsrc=)[^>]*>(.*?)</script>", re.DOTALL)
# A Host header is echoed into connect-src only when it is a plain host[:port].
_PLAIN_HOST = re.compile(r"^[A-Za-z0-9.\-]+(:\d{1,5})?$|^\[[0-9A-Fa-f:.]+\](:\d{1,5})?$")


def _inline_script_hashes(html: str) -> tuple[str, ...]:
    """CSP sources for the page's inline scripts (the console has one: its import map)."""
    digests = (hashlib.sha256(body.encode()).digest() for body in _INLINE_SCRIPT.findall(html))
    return tuple(f"'sha256-{base64.b64encode(digest).decode()}'" for digest in digests)


def content_security_policy(
    scope: Scope, script_hashes: Iterable[str] = (), *, inline_styles: bool = False
) -> str:
    """This server only: scripts, styles, fonts, images and connections (HTTP and its
    WebSocket, which CSP's 'self' does not cover in every browser)."""
    connect = ["'self'"]
    host = dict(scope.get("headers") or []).get(b"host", b"").decode("latin-1")
    if _PLAIN_HOST.match(host):
        secure = scope.get("scheme") in ("https", "wss")
        connect.append(f"{'wss' if secure else 'ws'}://{host}")
    directives = {
        "default-src": ["'none'"],
        "script-src": ["'self'", *script_hashes],
        "style-src": ["'self'", *(["'unsafe-inline'"] if inline_styles else [])],
        "img-src": ["'self'", "data:"],
        "font-src": ["'self'", "data:"],
        "connect-src": connect,
        "base-uri": ["'none'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    }
    return "; ".join(f"{name} {' '.join(values)}" for name, values in directives.items())


def _security_headers(csp: str) -> dict[str, str]:
    return {
        "Content-Security-Policy": csp,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "Cache-Control": "no-cache",
    }


class ConsoleFiles(StaticFiles):
    """app/console as static files, each with the console's security headers."""

    def __init__(self) -> None:
        super().__init__(directory=CONSOLE_DIR, html=True)
        index = (CONSOLE_DIR / "index.html").read_text()
        self._script_hashes = _inline_script_hashes(index)

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers.update(
            _security_headers(content_security_policy(scope, self._script_hashes))
        )
        return response


def graphiql_page(request: Request) -> Response:
    """GraphiQL's page, loading React and GraphiQL from /console/vendor (no CDN).

    GraphiQL's components (Radix dialogs, CodeMirror) set styles from script, so its page
    allows inline styles; scripts stay this server's alone.
    """
    html = GRAPHIQL_PAGE.read_text()
    csp = content_security_policy(request.scope, _inline_script_hashes(html), inline_styles=True)
    return HTMLResponse(html, headers=_security_headers(csp))


def console_routes() -> list[BaseRoute]:
    """`/console` (the console's files) and `/`, which sends a browser there."""

    async def home(_request: Request) -> Response:
        return RedirectResponse("/console/", status_code=307)

    return [Route("/", home), Mount("/console", app=ConsoleFiles(), name="console")]
