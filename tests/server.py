"""A real uvicorn server in a thread of the test process, on a free loopback port."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Coroutine, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from typing import Any, TypeVar

import httpx
import uvicorn
import uvloop

from app.db.engine import Database
from app.domain.clock import ManualClock
from app.main import create_app
from app.settings import Settings
from app.state import AppState

T = TypeVar("T")


class LiveServer:
    """The service, started for real; tests talk to it over HTTP and reach its loop."""

    def __init__(self, settings: Settings, clock: ManualClock) -> None:
        self.settings = settings
        self.clock = clock
        self.app = create_app(settings, clock)
        self.state: AppState = self.app.state.machine_groups
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind(("127.0.0.1", 0))
        self.port = self._socket.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}/graphql"
        config = uvicorn.Config(self.app, log_level="warning", lifespan="on")
        self._server = uvicorn.Server(config)
        self._loop = uvloop.new_event_loop()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        # One client for the whole test: a new client per request costs a TLS context.
        self.http = httpx.Client(timeout=30)

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._server.serve(sockets=[self._socket]))

    def start(self) -> LiveServer:
        """Start and wait until it accepts requests."""
        self._thread.start()
        for _ in range(500):
            if self._server.started:
                return self
            if not self._thread.is_alive():
                break
            threading.Event().wait(0.01)
        raise RuntimeError("the test server did not start")

    def stop(self) -> None:
        """Stop and wait for the thread."""
        self.http.close()
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._loop.close()

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run a coroutine on the server's event loop (for database checks)."""
        return self.submit(coroutine).result(timeout=30)

    def submit(self, coroutine: Coroutine[Any, Any, T]) -> Future[T]:
        """Start a coroutine on the server's event loop, without waiting for it."""
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop)

    @contextmanager
    def database_unreachable(self) -> Iterator[None]:
        """The service's database swapped, wherever the service holds it, for one that
        cannot be opened; the real one is back on exit."""
        reachable = self.state.db
        unreachable = Database("sqlite+aiosqlite:////nonexistent-folder/mg.db")
        self.state.db = self.state.hub.db = unreachable
        try:
            yield
        finally:
            self.run(unreachable.dispose())
            self.state.db = self.state.hub.db = reachable

    def post(
        self, query: str, variables: dict[str, Any] | None = None, token: str | None = None
    ) -> httpx.Response:
        """One GraphQL request over HTTP."""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return self.http.post(
            self.url,
            json={"query": query, "variables": variables or {}},
            headers=headers,
            timeout=30,
        )
