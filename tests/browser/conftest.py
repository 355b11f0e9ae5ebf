"""The console in a real browser: Debian's Chromium driven by Playwright, against a live server.

No browser is ever downloaded: Playwright launches `/usr/bin/chromium` (`.ci/run` installs
the distribution's package when it is missing). Every page a test opens goes through
`ConsolePage`, which

- lets requests reach the test server only: anything for another host is aborted and
  recorded, and the test fails at teardown if any was attempted (WebSockets too);
- records console errors and uncaught exceptions, which fail the test at teardown;
- audits accessibility with the vendored axe-core (`audit`), failing on serious or
  critical violations, and writes screenshots at 1280x800 and 390x844 to tests/artifacts/.

The browser tests run in CI's SQLite pass only (each module is marked `sqlite_only`): they
test the console, which is the same on either database, and a browser is slow to run twice.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Page,
    Playwright,
    Request,
    Route,
    WebSocket,
    expect,
    sync_playwright,
)

# The live server and the API factories of the API tests.
from tests.api.conftest import (
    Account,
    admin,
    api,
    make_group,
    make_machine,
    make_user,
    server,
)
from tests.conftest import REPO
from tests.server import LiveServer

CHROMIUM = Path("/usr/bin/chromium")
LAUNCH_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
AXE = REPO / "tests/browser/vendor/axe-core/axe.min.js"
ARTIFACTS = REPO / "tests/artifacts"
SIZES = {"desktop": (1280, 800), "phone": (390, 844)}
TOKEN_KEY = "machine-groups.token"
BLOCKING_IMPACTS = {"serious", "critical"}

# Live views take a moment on a busy 2-core machine: wait for them, never sleep.
expect.set_options(timeout=15_000)


# Package scope, not session: Playwright's sync API keeps an event loop running on the
# main thread while it is open, and tests after this package call asyncio.run().
@pytest.fixture(scope="package")
def playwright_driver() -> Iterator[Playwright]:
    """Playwright's driver, once for the browser tests."""
    if not CHROMIUM.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing: .ci/run installs the chromium package")
        pytest.skip(f"{CHROMIUM} is missing: apt-get install chromium (or run .ci/run)")
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="package")
def browser(playwright_driver: Playwright) -> Iterator[Browser]:
    """Debian's Chromium, headless, once for the browser tests."""
    launched = playwright_driver.chromium.launch(
        executable_path=str(CHROMIUM), args=LAUNCH_ARGS, headless=True
    )
    yield launched
    launched.close()


class ConsolePage:
    """One browser context (one person's tab) on the console, with its guards."""

    def __init__(self, context: BrowserContext, server: LiveServer) -> None:
        self.context = context
        self.origin = f"http://127.0.0.1:{server.port}"
        self.host = urlsplit(self.origin).netloc
        self.foreign: list[str] = []
        self.errors: list[str] = []
        self.allowed_errors: list[re.Pattern[str]] = []
        context.route("**/*", self._only_the_server)
        self.page = context.new_page()
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda error: self.errors.append(f"uncaught: {error}"))
        self.page.on("websocket", self._websocket)

    def _only_the_server(self, route: Route, request: Request) -> None:
        if urlsplit(request.url).netloc == self.host:
            route.continue_()
        else:
            self.foreign.append(request.url)
            route.abort("blockedbyclient")

    def _websocket(self, socket: WebSocket) -> None:
        if urlsplit(socket.url).netloc != self.host:
            self.foreign.append(socket.url)

    def _console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            text = message.text
            if not any(pattern.search(text) for pattern in self.allowed_errors):
                self.errors.append(text)

    def allow_error(self, pattern: str) -> None:
        """A console error the test provokes on purpose (e.g. an HTTP 401 it expects)."""
        self.allowed_errors.append(re.compile(pattern))

    # Navigation -------------------------------------------------------------------------

    def open(self, path: str = "/console/") -> Page:
        """Open a path of the server."""
        self.page.goto(self.origin + path)
        return self.page

    def sign_in(self, account: Account) -> Page:
        """Sign in by pasting the account's token, as a person would."""
        page = self.open("/")
        page.get_by_label("Bearer token").fill(account.token)
        page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_test_id("me-name")).to_have_text(account.name)
        return page

    def open_group(self, group_id: str) -> Page:
        """Open a group's page from the address bar (hash route) and wait for its data."""
        page = self.page
        page.goto(f"{self.origin}/console/#/groups/{group_id}")
        expect(page.get_by_role("heading", name="Queue")).to_be_visible()
        return page

    def mark_document(self) -> None:
        """Mark the loaded document, to prove later that it was never reloaded."""
        self.page.evaluate("window.__sameDocument = true")

    def assert_same_document(self) -> None:
        """The page marked by `mark_document` is still the one shown: no reload happened."""
        assert self.page.evaluate("window.__sameDocument === true")

    # Audit and screenshots ----------------------------------------------------------------

    def audit(
        self,
        name: str,
        ready: Callable[[Page], None] | None = None,
        exclude: tuple[str, ...] = (),
    ) -> None:
        """At both sizes: axe-core finds no serious or critical violation (outside the
        `exclude` selectors), nothing is wider than the window, and a screenshot goes to
        tests/artifacts/NAME-WxH.png."""
        page = self.page
        ARTIFACTS.mkdir(exist_ok=True)
        for width, height in SIZES.values():
            page.set_viewport_size({"width": width, "height": height})
            if ready:
                ready(page)
            overflow = page.evaluate(
                "document.documentElement.scrollWidth - document.documentElement.clientWidth"
            )
            assert overflow <= 0, f"{name} at {width}x{height} scrolls sideways by {overflow}px"
            violations = self._axe(exclude)
            assert not violations, f"{name} at {width}x{height}: " + json.dumps(
                violations, indent=1
            )
            page.screenshot(path=ARTIFACTS / f"{name}-{width}x{height}.png", full_page=True)
        page.set_viewport_size({"width": SIZES["desktop"][0], "height": SIZES["desktop"][1]})

    def _axe(self, exclude: tuple[str, ...]) -> list[dict[str, Any]]:
        page = self.page
        if not page.evaluate("typeof window.axe === 'object'"):
            # Evaluated through the DevTools protocol: the page's CSP (no inline script)
            # stays in force for everything the page itself does.
            page.evaluate(AXE.read_text() + "\n;undefined")
        results: dict[str, Any] = page.evaluate(
            """exclude => axe.run({include: [document], exclude: exclude.map(s => [s])}, {
                runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa',
                                                'wcag22aa', 'best-practice']},
                resultTypes: ['violations'],
            })""",
            list(exclude),
        )
        return [
            {
                "id": violation["id"],
                "impact": violation["impact"],
                "help": violation["help"],
                "nodes": [node["target"] for node in violation["nodes"][:5]],
            }
            for violation in results["violations"]
            if violation["impact"] in BLOCKING_IMPACTS
        ]

    def check(self) -> None:
        """No request left for another host; no console error happened."""
        assert not self.foreign, f"requests to other hosts: {self.foreign}"
        assert not self.errors, f"console errors: {self.errors}"


OpenConsole = Callable[[], ConsolePage]


@pytest.fixture
def open_console(browser: Browser, server: LiveServer) -> Iterator[OpenConsole]:
    """Open a console tab in a fresh browser context (one per person); each one's guards
    are checked at teardown."""
    opened: list[ConsolePage] = []

    def open_one() -> ConsolePage:
        context = browser.new_context(
            viewport={"width": SIZES["desktop"][0], "height": SIZES["desktop"][1]},
            service_workers="block",
        )
        context.grant_permissions(
            ["clipboard-read", "clipboard-write"], origin=f"http://127.0.0.1:{server.port}"
        )
        context.set_default_timeout(15_000)
        console = ConsolePage(context, server)
        opened.append(console)
        return console

    yield open_one
    try:
        for console in opened:
            console.check()
    finally:
        for console in opened:
            console.context.close()


@pytest.fixture
def console(open_console: OpenConsole) -> ConsolePage:
    """One console tab."""
    return open_console()


# The API tests' fixtures, offered to the browser tests too.
__all__ = [
    "TOKEN_KEY",
    "Account",
    "ConsolePage",
    "OpenConsole",
    "admin",
    "api",
    "make_group",
    "make_machine",
    "make_user",
    "server",
]
