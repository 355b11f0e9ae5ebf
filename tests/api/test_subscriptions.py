"""Live status over graphql-transport-ws: `queueStatus` and `runUpdates` (spec "Live status").

Real WebSockets against the live server; the changes are made over HTTP by users and by
machine agents, as in production.
"""

from __future__ import annotations

from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed

from app.domain.clock import ManualClock
from app.domain.identity import Refusal
from app.queue.sweeper import sweep
from tests.api.conftest import Account, Api, MakeUser
from tests.api.queue_helpers import (
    CANCEL_RUN,
    DEACTIVATE,
    DELETE_GROUP,
    REMOVE_MACHINE,
    REVOKE_GROUP,
    SET_PRIORITY,
    MakeGroup,
    MakeMachine,
    Pool,
    add_machine,
    claimed,
    complete,
    heartbeat,
    pool,
    set_maintenance,
    share_group,
    started,
)
from tests.server import LiveServer
from tests.ws import GraphQLSocket

QUEUE_STATUS = """
subscription($g: ID!) {
  queueStatus(groupId: $g) {
    groupId queuedCount runningCount machineCount onlineMachineCount idleMachineCount at
    changedRun { id status }
  }
}"""

RUN_UPDATES = """
subscription($id: ID!) { runUpdates(id: $id) { id status failureReason machine { id } } }"""

QUIET = 0.5  # how long "no further message" is watched for


@pytest.fixture
def ready(api: Api, admin: Account, make_group: MakeGroup, make_machine: MakeMachine) -> Pool:
    """A group of one online machine, owned by the administrator, with a connection."""
    return pool(api, admin, make_group, make_machine)


def socket(server: LiveServer, viewer: Account) -> GraphQLSocket:
    """An initialised, acknowledged WebSocket for the viewer."""
    ws = GraphQLSocket(server.url, viewer.token)
    assert ws.acknowledged()
    return ws


def status(ws: GraphQLSocket) -> dict[str, Any]:
    """The next queueStatus message (the subscription must still be open)."""
    data = ws.next_data()
    assert data is not None, "the stream completed"
    message: dict[str, Any] = data["queueStatus"]
    return message


def counts(message: dict[str, Any]) -> tuple[int, int, int, int, int]:
    """queued, running, machines, online, idle."""
    return (
        message["queuedCount"],
        message["runningCount"],
        message["machineCount"],
        message["onlineMachineCount"],
        message["idleMachineCount"],
    )


def assert_quiet(ws: GraphQLSocket) -> None:
    """No further message arrives for a while."""
    with pytest.raises(TimeoutError):
        ws.receive(timeout=QUIET)


def test_queue_status_sends_a_snapshot_then_one_message_per_change(
    server: LiveServer,
    api: Api,
    admin: Account,
    make_machine: MakeMachine,
    ready: Pool,
) -> None:
    with socket(server, admin) as ws:
        ws.subscribe(QUEUE_STATUS, {"g": ready.group_id})
        snapshot = status(ws)
        assert snapshot["groupId"] == ready.group_id
        assert snapshot["changedRun"] is None
        assert counts(snapshot) == (0, 0, 1, 1, 1)
        assert_quiet(ws)

        queued = started(api, ready.connection_id, as_=admin)
        message = status(ws)
        assert message["changedRun"] == {"id": queued["id"], "status": "QUEUED"}
        assert counts(message) == (1, 0, 1, 1, 1)
        assert_quiet(ws)

        assert claimed(api, ready.key) is not None
        message = status(ws)
        assert message["changedRun"] == {"id": queued["id"], "status": "RUNNING"}
        assert counts(message) == (0, 1, 1, 1, 0)
        assert_quiet(ws)

        assert complete(api, ready.key, queued["id"])["errors"] == []
        message = status(ws)
        assert message["changedRun"] == {"id": queued["id"], "status": "SUCCEEDED"}
        assert counts(message) == (0, 0, 1, 1, 1)
        assert_quiet(ws)

        set_maintenance(api, ready.group_id, True, as_=admin)
        message = status(ws)
        assert message["changedRun"] is None
        assert counts(message) == (0, 0, 1, 1, 0)
        set_maintenance(api, ready.group_id, False, as_=admin)
        message = status(ws)
        assert message["changedRun"] is None
        assert counts(message) == (0, 0, 1, 1, 1)
        assert_quiet(ws)

        joining, _ = make_machine()
        assert add_machine(api, joining, ready.group_id, as_=admin)["errors"] == []
        message = status(ws)
        assert message["changedRun"] is None
        assert counts(message) == (0, 0, 2, 1, 1)  # it has not called in yet
        assert_quiet(ws)


def test_queue_status_announces_machines_going_offline_coming_back_and_leaving(
    server: LiveServer, api: Api, admin: Account, clock: ManualClock, ready: Pool
) -> None:
    with socket(server, admin) as ws:
        ws.subscribe(QUEUE_STATUS, {"g": ready.group_id})
        assert counts(status(ws)) == (0, 0, 1, 1, 1)

        # The sweeper notices the silence (as its loop does: each pass knows the last one).
        last = server.run(sweep(server.state.hub))
        clock.advance(server.settings.machine_timeout + 1)
        server.run(sweep(server.state.hub, last))
        message = status(ws)
        assert message["changedRun"] is None
        assert counts(message) == (0, 0, 1, 0, 0)
        assert_quiet(ws)

        heartbeat(api, ready.key)
        message = status(ws)
        assert message["changedRun"] is None
        assert counts(message) == (0, 0, 1, 1, 1)
        assert_quiet(ws)

        api.ok(REMOVE_MACHINE, {"m": ready.machine_id}, as_=admin)
        message = status(ws)
        assert message["changedRun"] is None
        assert counts(message) == (0, 0, 0, 0, 0)
        assert_quiet(ws)


def test_queue_status_ends_when_the_group_is_deleted(
    server: LiveServer, api: Api, admin: Account, ready: Pool
) -> None:
    queued = started(api, ready.connection_id, as_=admin)
    api.ok(REMOVE_MACHINE, {"m": ready.machine_id}, as_=admin)
    with socket(server, admin) as ws:
        ws.subscribe(QUEUE_STATUS, {"g": ready.group_id})
        assert counts(status(ws)) == (1, 0, 0, 0, 0)

        api.ok(DELETE_GROUP, {"id": ready.group_id}, as_=admin)
        # Its queued run is cancelled (which may be announced), then the stream ends,
        # saying why.
        while (message := ws.receive())["type"] == "next" and "errors" not in message["payload"]:
            changed = message["payload"]["data"]["queueStatus"]["changedRun"]
            assert changed == {"id": queued["id"], "status": "CANCELLED"}
        assert message["payload"]["errors"] == [
            {
                "message": "the stream ended: the machine group was deleted",
                "extensions": {"code": "NOT_FOUND"},
            }
        ]
        assert ws.receive()["type"] == "complete"


def test_queue_status_ends_when_the_viewers_grant_is_revoked(
    server: LiveServer, api: Api, admin: Account, make_user: MakeUser, ready: Pool
) -> None:
    viewer = make_user(roles=["DESKTOP_FLOWS_MACHINE_USER"])
    bystander = make_user(roles=["DESKTOP_FLOWS_MACHINE_USER"])
    share_group(api, ready.group_id, viewer, "USER", as_=admin)
    share_group(api, ready.group_id, bystander, "USER", as_=admin)
    with socket(server, viewer) as ws:
        ws.subscribe(QUEUE_STATUS, {"g": ready.group_id})
        assert status(ws)["changedRun"] is None

        # Someone else losing access leaves the viewer's stream open.
        api.ok(REVOKE_GROUP, {"g": ready.group_id, "u": bystander.id}, as_=admin)
        queued = started(api, ready.connection_id, as_=admin)
        message = status(ws)
        if message["changedRun"] is None:  # the access change itself may be announced
            # Its counts are read when it is delivered: through PostgreSQL's LISTEN the
            # run started just after may already be queued by then.
            assert counts(message) in ((0, 0, 1, 1, 1), (1, 0, 1, 1, 1))
            message = status(ws)
        assert message["changedRun"] == {"id": queued["id"], "status": "QUEUED"}

        api.ok(REVOKE_GROUP, {"g": ready.group_id, "u": viewer.id}, as_=admin)
        assert ws.ending() == {
            "message": "the stream ended: you no longer see this machine group"
            " (a grant was revoked or a role removed)",
            "extensions": {"code": "NOT_FOUND"},
        }


def test_queue_status_ends_when_the_viewer_is_deactivated(
    server: LiveServer, api: Api, admin: Account, make_user: MakeUser, ready: Pool
) -> None:
    viewer = make_user(roles=["DESKTOP_FLOWS_MACHINE_USER"])
    share_group(api, ready.group_id, viewer, "CO_OWNER", as_=admin)
    with socket(server, viewer) as ws:
        ws.subscribe(QUEUE_STATUS, {"g": ready.group_id})
        assert status(ws)["changedRun"] is None

        api.ok(DEACTIVATE, {"id": viewer.id}, as_=admin)
        ended = ws.ending()
        assert ended["extensions"] == {"code": "TOKEN_USER_DEACTIVATED"}
        assert ended["message"].startswith("the stream ended: the bearer token's user is")


@pytest.mark.parametrize(
    ("token", "refusal"),
    [
        ("not-a-token", Refusal.MALFORMED),
        (None, Refusal.MISSING),
        ("mgk_no-such-machine", Refusal.UNKNOWN_MACHINE),
    ],
    ids=["bad token", "no token", "unknown machine key"],
)
def test_a_websocket_without_a_valid_token_is_refused_saying_why(
    server: LiveServer, ready: Pool, token: str | None, refusal: Refusal
) -> None:
    ws = GraphQLSocket(server.url, token)
    try:
        with pytest.raises(ConnectionClosed) as refused:
            ws.receive()
    finally:
        ws.close()
    assert refused.value.rcvd is not None
    assert refused.value.rcvd.code == 4403
    assert refused.value.rcvd.reason == refusal.close_reason


def test_a_deactivated_users_websocket_is_refused(
    server: LiveServer, api: Api, admin: Account, make_user: MakeUser
) -> None:
    viewer = make_user(roles=["DESKTOP_FLOWS_MACHINE_USER"])
    api.ok(DEACTIVATE, {"id": viewer.id}, as_=admin)
    ws = GraphQLSocket(server.url, viewer.token)
    try:
        with pytest.raises(ConnectionClosed) as refused:
            ws.receive()
    finally:
        ws.close()
    assert refused.value.rcvd is not None
    assert refused.value.rcvd.code == 4403
    assert refused.value.rcvd.reason == Refusal.DEACTIVATED.close_reason


def test_queue_status_of_a_group_the_viewer_does_not_see_is_an_error(
    server: LiveServer, make_user: MakeUser, ready: Pool
) -> None:
    outsider = make_user(roles=["DESKTOP_FLOWS_MACHINE_OWNER"])
    with socket(server, outsider) as ws:
        subscription = ws.subscribe(QUEUE_STATUS, {"g": ready.group_id})
        message = ws.receive()
        assert message["id"] == subscription
        if message["type"] == "next":
            assert message["payload"]["data"] is None
            assert message["payload"]["errors"]
            assert "not found" in message["payload"]["errors"][0]["message"]
            assert ws.receive() == {"id": subscription, "type": "complete"}
        else:
            assert message["type"] == "error"
        # Nothing of the group leaks out afterwards.
        assert_quiet(ws)


def test_run_updates_sends_the_state_then_each_status_change_then_completes(
    server: LiveServer, api: Api, admin: Account, ready: Pool
) -> None:
    queued = started(api, ready.connection_id, as_=admin)
    with socket(server, admin) as ws:
        ws.subscribe(RUN_UPDATES, {"id": queued["id"]})
        first = ws.next_data()
        assert first == {
            "runUpdates": {
                "id": queued["id"],
                "status": "QUEUED",
                "failureReason": None,
                "machine": None,
            }
        }
        # A change that is not a status change sends nothing.
        api.ok(SET_PRIORITY, {"id": queued["id"], "p": "HIGH"}, as_=admin)
        assert_quiet(ws)

        assert claimed(api, ready.key) is not None
        running = ws.next_data()
        assert running is not None
        assert running["runUpdates"]["status"] == "RUNNING"
        assert running["runUpdates"]["machine"] == {"id": ready.machine_id}

        failed = complete(api, ready.key, queued["id"], "FAILED", message="no window")
        assert failed["errors"] == []
        final = ws.next_data()
        assert final is not None
        assert (final["runUpdates"]["status"], final["runUpdates"]["failureReason"]) == (
            "FAILED",
            "no window",
        )
        assert ws.next_data() is None  # `complete` after the final status


def test_run_updates_of_a_cancelled_queued_run(
    server: LiveServer, api: Api, admin: Account, ready: Pool
) -> None:
    queued = started(api, ready.connection_id, as_=admin)
    with socket(server, admin) as ws:
        ws.subscribe(RUN_UPDATES, {"id": queued["id"]})
        first = ws.next_data()
        assert first is not None and first["runUpdates"]["status"] == "QUEUED"
        api.ok(CANCEL_RUN, {"id": queued["id"]}, as_=admin)
        final = ws.next_data()
        assert final is not None
        assert (final["runUpdates"]["status"], final["runUpdates"]["failureReason"]) == (
            "CANCELLED",
            "CANCELLED_BY_USER",
        )
        assert ws.next_data() is None


def test_run_updates_of_a_run_the_sweeper_ends(
    server: LiveServer, api: Api, admin: Account, clock: ManualClock, ready: Pool
) -> None:
    running = started(api, ready.connection_id, as_=admin)
    assert claimed(api, ready.key) is not None
    with socket(server, admin) as ws:
        ws.subscribe(RUN_UPDATES, {"id": running["id"]})
        first = ws.next_data()
        assert first is not None and first["runUpdates"]["status"] == "RUNNING"

        clock.advance(server.settings.machine_timeout + 1)
        server.run(sweep(server.state.hub))
        final = ws.next_data()
        assert final is not None
        assert (final["runUpdates"]["status"], final["runUpdates"]["failureReason"]) == (
            "FAILED",
            "MACHINE_LOST",
        )
        assert ws.next_data() is None


def test_run_updates_of_a_final_run_completes_at_once(
    server: LiveServer, api: Api, admin: Account, ready: Pool
) -> None:
    done = started(api, ready.connection_id, as_=admin)
    assert claimed(api, ready.key) is not None
    assert complete(api, ready.key, done["id"])["errors"] == []
    with socket(server, admin) as ws:
        ws.subscribe(RUN_UPDATES, {"id": done["id"]})
        only = ws.next_data()
        assert only is not None and only["runUpdates"]["status"] == "SUCCEEDED"
        assert ws.next_data(timeout=2) is None


def test_run_updates_of_a_run_the_viewer_does_not_see_is_an_error(
    server: LiveServer, api: Api, admin: Account, make_user: MakeUser, ready: Pool
) -> None:
    queued = started(api, ready.connection_id, as_=admin)
    outsider = make_user(roles=["DESKTOP_FLOWS_MACHINE_USER"])
    with socket(server, outsider) as ws:
        subscription = ws.subscribe(RUN_UPDATES, {"id": queued["id"]})
        message = ws.receive()
        assert message["id"] == subscription
        assert message["type"] in ("next", "error")
        if message["type"] == "next":
            assert message["payload"]["data"] is None
            assert message["payload"]["errors"]
        api.ok(CANCEL_RUN, {"id": queued["id"]}, as_=admin)
        while True:  # at most the protocol's `complete`; never the run
            try:
                extra = ws.receive(timeout=QUIET)
            except TimeoutError:
                break
            assert extra == {"id": subscription, "type": "complete"}
