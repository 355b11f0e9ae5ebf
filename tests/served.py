"""Requests served in-process on a database, with every statement each one sent.

For tests that look at what a request makes the database do (its plans, its work): the
service's app runs in this process (through `httpx.ASGITransport`), and the SQL it sends
while a request runs is recorded with its parameters, as the driver received them, so
that it can be explained or replayed on the same database.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
from sqlalchemy import event

from app.db.models import User
from app.domain.identity import mint_token
from app.main import create_app
from app.settings import Settings


@dataclass(frozen=True)
class Request:
    """A GraphQL request and who sends it (a user id, or a machine key)."""

    label: str
    query: str
    variables: dict[str, Any]
    as_user: str | None = None
    as_key: str | None = None


@dataclass(frozen=True)
class Sent:
    """One statement as the driver received it."""

    statement: str
    parameters: Any

    @property
    def is_read(self) -> bool:
        """A SELECT (transaction control and writes aside)."""
        return self.statement.lstrip().split(None, 1)[0].upper() in ("SELECT", "WITH")


def token_for(settings: Settings, user_id: str) -> str:
    """A bearer token for the user."""
    user = User(id=user_id, name=user_id, name_key=user_id)
    return mint_token(settings, user, datetime.now(UTC))


@dataclass(frozen=True)
class Served:
    """What each request (by label) sent to the database, and answered."""

    sent: dict[str, list[Sent]]
    data: dict[str, dict[str, Any]]


def serve(settings: Settings, requests: Sequence[Request]) -> Served:
    """Each request's statements and data, served one at a time by one app (after a first
    round that warms its caches); a request that fails fails the caller."""
    # The sweeper would send its statements while a request runs: it waits here.
    settings = dataclasses.replace(settings, sweep_interval=3600)
    return asyncio.run(_serve(settings, requests))


async def _serve(settings: Settings, requests: Sequence[Request]) -> Served:
    app = create_app(settings)
    served = Served({}, {})
    recording: list[Sent] | None = None

    def record(_c: Any, _cursor: Any, statement: str, parameters: Any, *_rest: Any) -> None:
        if recording is not None:
            recording.append(Sent(statement, parameters))

    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://served") as client,
    ):
        engine = app.state.machine_groups.db.engine.sync_engine
        event.listen(engine, "before_cursor_execute", record)
        try:
            for warm in (True, False):
                for request in requests:
                    recording = None if warm else served.sent.setdefault(request.label, [])
                    served.data[request.label] = await _send(client, settings, request)
                    recording = None
        finally:
            event.remove(engine, "before_cursor_execute", record)
    return served


async def _send(client: httpx.AsyncClient, settings: Settings, request: Request) -> dict[str, Any]:
    token = request.as_key or token_for(settings, request.as_user or "")
    response = await client.post(
        "/graphql",
        json={"query": request.query, "variables": request.variables},
        headers={"Authorization": f"Bearer {token}"},
    )
    body = response.json()
    assert response.status_code == 200 and "errors" not in body, (request.label, body)
    data: dict[str, Any] = body["data"]
    for value in data.values():
        errors = value.get("errors") if isinstance(value, dict) else None
        assert not errors, (request.label, errors)
    return data
