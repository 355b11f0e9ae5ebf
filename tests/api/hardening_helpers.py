"""Live servers with hardening settings changed, as `machine-groups serve` runs them."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import uvicorn

from app.db.models import User
from app.domain.clock import ManualClock
from app.domain.identity import mint_token
from app.domain.users import user_by_name
from app.main import server_config
from app.settings import Settings
from tests.api.conftest import Account
from tests.server import LiveServer


class ServedLiveServer(LiveServer):
    """The live test server, but with uvicorn configured by `server_config`, as `serve` does
    (the WebSocket message cap is uvicorn's, so only a server configured so enforces it)."""

    def __init__(self, settings: Settings, clock: ManualClock) -> None:
        super().__init__(settings, clock)
        config = server_config(self.app, settings, log_level="warning", lifespan="on")
        self._server = uvicorn.Server(config)


@contextmanager
def serving(settings: Settings, clock: ManualClock, **changes: Any) -> Iterator[LiveServer]:
    """A live server whose settings are `settings` with `changes`."""
    live = ServedLiveServer(dataclasses.replace(settings, **changes), clock).start()
    try:
        yield live
    finally:
        live.stop()


def error_messages(body: dict[str, Any]) -> list[str]:
    """The messages of a response's GraphQL errors."""
    return [error["message"] for error in body.get("errors") or []]


def admin_account(server: LiveServer) -> Account:
    """The bootstrapped administrator of `server`, with a token."""

    async def find() -> User:
        async with server.state.db.read() as session:
            user = await user_by_name(session, "admin")
            assert user is not None
            return user

    user = server.run(find())
    return Account(user.id, user.name, mint_token(server.settings, user, datetime.now(UTC)))


def admin_token(server: LiveServer) -> str:
    """A token for the bootstrapped administrator of `server`."""
    return admin_account(server).token
