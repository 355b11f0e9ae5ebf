"""A live server per test, a GraphQL client, and factories that create through the API."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from app.db.models import User
from app.domain import passwords
from app.domain.clock import ManualClock
from app.domain.identity import mint_token
from app.domain.users import user_by_name
from app.settings import Settings
from tests.api.held_hasher import HeldHasher
from tests.processes import AgentProcess
from tests.server import LiveServer

_names = itertools.count(1)


@dataclass(frozen=True)
class Account:
    """A user the test created, with a token for them."""

    id: str
    name: str
    token: str


class Api:
    """GraphQL over HTTP against the live server."""

    def __init__(self, server: LiveServer) -> None:
        self.server = server

    def execute(
        self, query: str, variables: dict[str, Any] | None = None, *, as_: Account | str
    ) -> dict[str, Any]:
        """The whole response body; fails the test on a non-200 status."""
        token = as_.token if isinstance(as_, Account) else as_
        response = self.server.post(query, variables, token)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def data(
        self, query: str, variables: dict[str, Any] | None = None, *, as_: Account | str
    ) -> dict[str, Any]:
        """The `data` of a response that must have no GraphQL errors."""
        body = self.execute(query, variables, as_=as_)
        assert "errors" not in body, body["errors"]
        data: dict[str, Any] = body["data"]
        return data

    def mutate(
        self, query: str, variables: dict[str, Any] | None = None, *, as_: Account | str
    ) -> dict[str, Any]:
        """The payload of a single-mutation document."""
        data = self.data(query, variables, as_=as_)
        (payload,) = data.values()
        assert isinstance(payload, dict)
        return payload

    def ok(
        self, query: str, variables: dict[str, Any] | None = None, *, as_: Account | str
    ) -> dict[str, Any]:
        """The payload of a mutation that must succeed."""
        payload = self.mutate(query, variables, as_=as_)
        assert payload["errors"] == [], payload["errors"]
        return payload


def error_codes(payload: dict[str, Any]) -> list[str]:
    """The codes of a payload's errors."""
    return [error["code"] for error in payload["errors"]]


@pytest.fixture
def server(settings: Settings, clock: ManualClock) -> Iterator[LiveServer]:
    """The service on a fresh SQLite database, over real HTTP."""
    live = LiveServer(settings, clock).start()
    yield live
    live.stop()


@pytest.fixture
def api(server: LiveServer) -> Api:
    """A GraphQL client for the live server."""
    return Api(server)


def _token(server: LiveServer, user_id: str, name: str) -> str:
    # Real time, not the test's clock: PyJWT checks issue and expiry times against the
    # system clock, so a token minted on a clock moved ahead would not be valid yet.
    return mint_token(
        server.settings, User(id=user_id, name=name, name_key=name), datetime.now(UTC)
    )


@pytest.fixture
def admin(server: LiveServer) -> Account:
    """The bootstrapped administrator, premium so it can register machines."""

    async def find() -> User:
        async with server.state.db.read() as session:
            user = await user_by_name(session, "admin")
            assert user is not None
            return user

    user = server.run(find())
    account = Account(user.id, user.name, _token(server, user.id, user.name))
    Api(server).ok(
        "mutation($id: ID!) { setUserPremium(userId: $id, premium: true) { errors { code } } }",
        {"id": user.id},
        as_=account,
    )
    return account


MakeUser = Callable[..., Account]


@pytest.fixture
def make_user(api: Api, admin: Account, server: LiveServer) -> MakeUser:
    """Create a user through the API: `make_user(roles=[...], premium=False, name=None)`."""

    def make(roles: Sequence[str] = (), premium: bool = False, name: str | None = None) -> Account:
        name = name or f"user{next(_names)}"
        payload = api.ok(
            "mutation($name: String!, $premium: Boolean) {"
            " createUser(input: {name: $name, premium: $premium}) {"
            " user { id } errors { code } } }",
            {"name": name, "premium": premium},
            as_=admin,
        )
        user_id = payload["user"]["id"]
        for role in roles:
            api.ok(
                "mutation($id: ID!, $role: SecurityRole!) {"
                " assignSecurityRole(userId: $id, role: $role) { errors { code } } }",
                {"id": user_id, "role": role},
                as_=admin,
            )
        return Account(user_id, name, _token(server, user_id, name))

    return make


@pytest.fixture
def make_group(api: Api, admin: Account) -> Callable[..., str]:
    """Create a group through the API: `make_group(owner=admin, name=None)` returns its id."""

    def make(owner: Account | None = None, name: str | None = None) -> str:
        payload = api.ok(
            "mutation($name: String!) { createMachineGroup(input: {name: $name}) {"
            " machineGroup { id } errors { code } } }",
            {"name": name or f"group {next(_names)}"},
            as_=owner or admin,
        )
        group_id: str = payload["machineGroup"]["id"]
        return group_id

    return make


@pytest.fixture
def make_machine(api: Api, admin: Account) -> Callable[..., tuple[str, str]]:
    """Register a machine through the API: returns (id, machine key)."""

    def make(owner: Account | None = None, name: str | None = None) -> tuple[str, str]:
        payload = api.ok(
            "mutation($name: String!) { registerMachine(input: {name: $name}) {"
            " machine { id } machineKey errors { code } } }",
            {"name": name or f"VM-{next(_names):03d}"},
            as_=owner or admin,
        )
        return payload["machine"]["id"], payload["machineKey"]

    return make


@pytest.fixture
def agents() -> Iterator[Callable[..., AgentProcess]]:
    """Start agents: `agents(server_url, key, flows, key_in_env=True, **options)` (see
    AgentProcess); killed at teardown."""
    started: list[AgentProcess] = []

    def start(
        server_url: str, key: str, folder: Path, *, key_in_env: bool = True, **options: Any
    ) -> AgentProcess:
        agent = AgentProcess(server_url, key, folder, key_in_env=key_in_env, **options)
        started.append(agent)
        return agent

    yield start
    for agent in started:
        agent.kill()


@pytest.fixture
def hasher(monkeypatch: pytest.MonkeyPatch) -> Iterator[HeldHasher]:
    """The live server's password hasher (it runs in this process), made observable."""
    held = HeldHasher(passwords._hasher)
    monkeypatch.setattr(passwords, "_hasher", held)
    yield held
    held.let_go()
