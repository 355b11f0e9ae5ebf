"""An open WebSocket is decided for its viewer as they are now (spec "Every path, every
moment"): each operation, and each message of a live stream, within a second of a
revoke, a removed role, a deactivation or an expiring token, whether the change came
through the API or straight to the database (the command line's way)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import delete, update
from sqlmodel import col
from websockets.exceptions import ConnectionClosed

from app.db.models import RoleAssignment, User
from app.domain.identity import Refusal, mint_token
from tests.api.conftest import Account, Api, MakeUser
from tests.api.queue_helpers import (
    DEACTIVATE,
    REVOKE_GROUP,
    MakeGroup,
    MakeMachine,
    Pool,
    pool,
    share_group,
    started,
)
from tests.api.test_subscriptions import QUEUE_STATUS, RUN_UPDATES
from tests.server import LiveServer
from tests.ws import GraphQLSocket

WITHIN = 1.0  # the spec's bound for a change to reach open sockets
START_RUN = """
mutation($c: ID!) { startRun(input: {connectionId: $c, flowName: "Invoice"}) {
  run { id } errors { code } } }"""
CREATE_USER = """
mutation($n: String!) { createUser(input: {name: $n}) { user { id } errors { code } } }"""
REMOVE_ADMIN = """
mutation($u: ID!) { removeSecurityRole(userId: $u, role: SYSTEM_ADMINISTRATOR) {
  errors { code } } }"""


@pytest.fixture
def ready(api: Api, admin: Account, make_group: MakeGroup, make_machine: MakeMachine) -> Pool:
    """A group of one online machine with a connection, owned by the administrator."""
    return pool(api, admin, make_group, make_machine)


def _socket(server: LiveServer, token: str) -> GraphQLSocket:
    socket = GraphQLSocket(server.url, token)
    assert socket.acknowledged()
    return socket


def _closed_within(socket: GraphQLSocket, seconds: float) -> tuple[int, str]:
    """The close code and reason of a socket the server closes within `seconds` (with a
    little slack for a busy machine), sending nothing before."""
    began = time.monotonic()
    with pytest.raises(ConnectionClosed) as closed:
        socket.receive(timeout=seconds + 5)
    assert time.monotonic() - began <= seconds + 0.5, "closed later than the spec allows"
    assert closed.value.rcvd is not None
    return closed.value.rcvd.code, closed.value.rcvd.reason


def _write(server: LiveServer, statement: object) -> None:
    """A change written straight to the database, as the command line does: no event."""

    async def write() -> None:
        async with server.state.db.write() as session:
            await session.execute(statement)  # type: ignore[call-overload]

    server.run(write())


def test_a_deactivated_users_socket_runs_nothing_more_and_is_closed(
    server: LiveServer, api: Api, admin: Account, make_user: MakeUser, ready: Pool
) -> None:
    member = make_user(roles=["DESKTOP_FLOWS_MACHINE_USER"])
    share_group(api, ready.group_id, member, "USER", as_=admin)
    with _socket(server, member.token) as socket:
        assert "NOT_FOUND" in socket.ask(START_RUN, {"c": "no such connection"})
        api.ok(DEACTIVATE, {"id": member.id}, as_=admin)
        # The very next operation already runs for the deactivated user: nothing is queued.
        try:
            socket.ask(START_RUN, {"c": ready.connection_id})
        except ConnectionClosed as closed:
            assert closed.rcvd is not None and closed.rcvd.code == 4403
        queued = api.data(
            "query($g: ID!) { machineGroup(id: $g) { queuedCount } }",
            {"g": ready.group_id},
            as_=admin,
        )
        assert queued == {"machineGroup": {"queuedCount": 0}}


def test_a_removed_administrator_role_stops_administering_on_an_open_socket(
    server: LiveServer, api: Api, admin: Account, make_user: MakeUser
) -> None:
    helper = make_user(roles=["SYSTEM_ADMINISTRATOR"])
    with _socket(server, helper.token) as socket:
        assert '"errors":[]' in socket.ask(CREATE_USER, {"n": "made-while-admin"})
        api.ok(REMOVE_ADMIN, {"u": helper.id}, as_=admin)
        answer = socket.ask(CREATE_USER, {"n": "made-after-removal"})
        assert "PERMISSION_DENIED" in answer
    assert api.data('{ userByName(name: "made-after-removal") { id } }', as_=admin) == {
        "userByName": None
    }


def test_run_updates_end_when_the_viewer_loses_the_run(
    server: LiveServer, api: Api, admin: Account, make_user: MakeUser, ready: Pool
) -> None:
    member = make_user(roles=["DESKTOP_FLOWS_MACHINE_USER"])
    share_group(api, ready.group_id, member, "USER", as_=admin)
    run = started(api, ready.connection_id, as_=admin)
    with _socket(server, member.token) as socket:
        socket.subscribe(RUN_UPDATES, {"id": run["id"]})
        first = socket.next_data()
        assert first is not None and first["runUpdates"]["status"] == "QUEUED"
        api.ok(REVOKE_GROUP, {"g": ready.group_id, "u": member.id}, as_=admin)
        # The stream ends saying why, and with no final output.
        assert socket.ending(timeout=WITHIN)["message"].startswith(
            "the stream ended: you no longer see this run"
        )
        # The run goes on for those who still see it.
        assert api.data(
            "query($id: ID!) { run(id: $id) { status } }", {"id": run["id"]}, as_=admin
        ) == {"run": {"status": "QUEUED"}}


def test_a_token_expiring_while_its_socket_is_open_closes_it(
    server: LiveServer, admin: Account
) -> None:
    user = User(id=admin.id, name=admin.name, name_key=admin.name)
    # PyJWT checks times against the system clock, so the token's life is real time.
    token = mint_token(server.settings, user, datetime.now(UTC), timedelta(seconds=2))
    with _socket(server, token) as socket:
        assert admin.name in socket.ask("{ me { name } }")
        code, reason = _closed_within(socket, 2 + WITHIN)
    assert code == 4403
    assert reason == Refusal.EXPIRED.close_reason
    assert "expired" in reason and "`machine-groups token NAME`" in reason


def test_changes_written_straight_to_the_database_reach_open_sockets_within_a_second(
    server: LiveServer, api: Api, admin: Account, make_user: MakeUser, ready: Pool
) -> None:
    watcher = make_user(roles=["SYSTEM_ADMINISTRATOR"])
    leaver = make_user(roles=["DESKTOP_FLOWS_MACHINE_USER"])
    share_group(api, ready.group_id, leaver, "USER", as_=admin)
    with _socket(server, watcher.token) as watching, _socket(server, leaver.token) as leaving:
        watching.subscribe(QUEUE_STATUS, {"g": ready.group_id})
        assert watching.next_data() is not None
        # The administrator's role goes, with no event: their stream ends within a second.
        _write(server, delete(RoleAssignment).where(col(RoleAssignment.user_id) == watcher.id))
        began = time.monotonic()
        assert watching.ending(timeout=WITHIN + 0.5)["extensions"] == {"code": "NOT_FOUND"}
        assert time.monotonic() - began <= WITHIN + 0.5
        # A user deactivated with no event: their socket closes within a second.
        _write(server, update(User).where(col(User.id) == leaver.id).values(deactivated=True))
        code, reason = _closed_within(leaving, WITHIN)
    assert code == 4403
    assert reason == Refusal.DEACTIVATED.close_reason


def test_an_operation_of_a_user_gone_meanwhile_closes_the_socket_saying_why(
    server: LiveServer, make_user: MakeUser
) -> None:
    leaver = make_user()
    with _socket(server, leaver.token) as socket:
        assert leaver.name in socket.ask("{ me { name } }")
        # Written with no event: the next operation finds it before the watch does (or
        # the watch first; either way the socket closes saying the same).
        _write(server, update(User).where(col(User.id) == leaver.id).values(deactivated=True))
        with pytest.raises(ConnectionClosed) as closed:
            socket.ask("{ me { name } }")
    assert closed.value.rcvd is not None
    assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (
        4403,
        Refusal.DEACTIVATED.close_reason,
    )
