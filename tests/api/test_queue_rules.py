"""Connections, the run queue, dispatch and the sweeper, against the spec's "Queue and dispatch".

Everything goes through the live server over HTTP: users with their tokens, machine agents
with their machine keys. Time moves only on the shared ManualClock (`clock`), and the
sweeper runs when a test calls `sweep(server.state.hub)`.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest

from app.domain import secret_box
from app.domain.clock import ManualClock
from app.queue.sweeper import sweep
from app.settings import Settings
from tests.api.conftest import Account, Api, MakeUser
from tests.api.queue_helpers import (
    CANCEL_RUN,
    CLAIM,
    CONNECTIONS,
    DELETE_GROUP,
    REMOVE_MACHINE,
    REVOKE_GROUP,
    SET_PRIORITY,
    UPDATE_CONNECTION,
    MakeGroup,
    MakeMachine,
    Pool,
    add_machine,
    claim,
    claimed,
    codes,
    complete,
    connection_id,
    connection_row,
    create_connection,
    heartbeat,
    pool,
    queue_ids,
    run,
    set_maintenance,
    share_group,
    start_run,
    started,
)
from tests.server import LiveServer

QUEUE_LIMIT = 3
RUN_LIMIT = 100  # MG_MAX_RUN_SECONDS here, so a run can outlive it while its agent heartbeats

RUNS = """
query($g: ID, $m: ID, $s: [RunStatus!], $first: Int, $after: String) {
  runs(groupId: $g, machineId: $m, status: $s, first: $first, after: $after) {
    totalCount pageInfo { hasNextPage endCursor } edges { cursor node { id } }
  }
}"""


@pytest.fixture
def queue_limit() -> int:
    """MG_MAX_QUEUED_RUNS for the module; a test parametrizes it to queue more."""
    return QUEUE_LIMIT


@pytest.fixture
def settings(settings: Settings, queue_limit: int) -> Settings:
    """Short queues and runs, so that limits are reached quickly."""
    return dataclasses.replace(settings, max_queued_runs=queue_limit, max_run_seconds=RUN_LIMIT)


@pytest.fixture
def ready(api: Api, admin: Account, make_group: MakeGroup, make_machine: MakeMachine) -> Pool:
    """A group of one online machine, owned by the administrator, with a connection."""
    return pool(api, admin, make_group, make_machine)


def moment(value: str) -> datetime:
    """A DateTime field's value."""
    return datetime.fromisoformat(value)


def runs_page(api: Api, *, as_: Account, **filters: Any) -> dict[str, Any]:
    """One page of `runs(...)`."""
    variables = {
        "g": filters.get("group"),
        "m": filters.get("machine"),
        "s": filters.get("status"),
        "first": filters.get("first", 50),
        "after": filters.get("after"),
    }
    page: dict[str, Any] = api.data(RUNS, variables, as_=as_)["runs"]
    return page


def run_ids(page: dict[str, Any]) -> list[str]:
    """The ids of a page's runs, in order."""
    return [edge["node"]["id"] for edge in page["edges"]]


def sweep_now(server: LiveServer) -> None:
    """One pass of the sweeper at the clock's time."""
    server.run(sweep(server.state.hub))


# Connections


def test_create_connection_never_returns_the_password_and_stores_it_encrypted(
    api: Api, server: LiveServer, admin: Account, ready: Pool
) -> None:
    secret = "Vm-Account-Pa55word-7f3a"
    response = server.post(
        """mutation($g: ID!, $p: String!) {
          createConnection(input: {name: "nightly", groupId: $g, username: " robot ",
                                   password: $p}) {
            connection { id name username status brokenReason group { id } machine { id } }
            errors { code }
          }
        }""",
        {"g": ready.group_id, "p": secret},
        admin.token,
    )
    assert response.status_code == 200
    assert secret not in response.text
    payload = response.json()["data"]["createConnection"]
    assert payload["errors"] == []
    connection = payload["connection"]
    assert connection["username"] == "robot"
    assert connection["status"] == "ACTIVE"
    assert connection["brokenReason"] is None
    assert connection["group"] == {"id": ready.group_id}
    assert connection["machine"] is None

    # No field of the schema returns it: Connection has no password field at all...
    fields = api.data('{ __type(name: "Connection") { fields { name } } }', as_=admin)
    names = [field["name"].lower() for field in fields["__type"]["fields"]]
    assert names and not any("password" in name for name in names)
    asked = server.post("{ connections { id password } }", token=admin.token).json()
    assert asked.get("errors") and asked.get("data") is None
    # ...and it appears in no answer that shows the connection.
    run_id = started(api, connection["id"], as_=admin)["id"]
    for query, variables in (
        (CONNECTIONS, {}),
        ("query($id: ID!) { run(id: $id) { connection { id name username } } }", {"id": run_id}),
    ):
        text = server.post(query, variables, admin.token).text
        assert connection["id"] in text
        assert secret not in text

    # At rest it is encrypted with the settings' key: not the plaintext, yet recoverable.
    stored = connection_row(server, connection["id"]).password_encrypted
    assert secret not in stored
    assert secret_box.decrypt(server.settings.secret_keys, stored) == secret

    # A new password replaces it, also encrypted and never echoed.
    changed = "Another-Secret-4242"
    response = server.post(UPDATE_CONNECTION, {"id": connection["id"], "p": changed}, admin.token)
    assert response.json()["data"]["updateConnection"]["errors"] == []
    assert changed not in response.text
    stored = connection_row(server, connection["id"]).password_encrypted
    assert changed not in stored
    assert secret_box.decrypt(server.settings.secret_keys, stored) == changed


def test_connections_are_visible_to_their_owner_and_to_who_sees_the_target(
    api: Api, admin: Account, make_user: MakeUser, ready: Pool
) -> None:
    maker = make_user(roles=["ENVIRONMENT_MAKER"])
    colleague = make_user(roles=["DESKTOP_FLOWS_MACHINE_USER"])
    co_owner = make_user(roles=["DESKTOP_FLOWS_MACHINE_USER"])
    stranger = make_user(roles=["DESKTOP_FLOWS_MACHINE_OWNER"])
    share_group(api, ready.group_id, maker, "USER", as_=admin)
    share_group(api, ready.group_id, colleague, "USER", as_=admin)
    share_group(api, ready.group_id, co_owner, "CO_OWNER", as_=admin)
    mine = connection_id(api, as_=maker, group_id=ready.group_id)

    def seen(viewer: Account) -> set[str]:
        return {c["id"] for c in api.data(CONNECTIONS, as_=viewer)["connections"]}

    assert seen(maker) == {mine, ready.connection_id}
    assert seen(colleague) == {mine, ready.connection_id}
    assert seen(co_owner) == {mine, ready.connection_id}
    assert seen(admin) == {mine, ready.connection_id}
    assert seen(stranger) == set()
    # Not seeing it: NOT_FOUND, the same as a connection that does not exist.
    assert codes(start_run(api, mine, as_=stranger)) == ["NOT_FOUND"]
    assert codes(start_run(api, "no-such-connection", as_=stranger)) == ["NOT_FOUND"]
    # Anyone who sees it, with run access and the run privilege, starts runs through it.
    assert start_run(api, mine, as_=colleague)["errors"] == []
    # Its owner and co-owners of its target may change it; other viewers may not.
    denied = api.mutate(UPDATE_CONNECTION, {"id": mine, "u": "intruder"}, as_=colleague)
    assert codes(denied) == ["PERMISSION_DENIED"]
    assert codes(api.mutate(UPDATE_CONNECTION, {"id": mine, "u": "x"}, as_=stranger)) == [
        "NOT_FOUND"
    ]
    changed = api.ok(UPDATE_CONNECTION, {"id": mine, "u": "operator"}, as_=co_owner)
    assert changed["connection"]["username"] == "operator"
    api.ok(UPDATE_CONNECTION, {"id": mine, "u": "robot"}, as_=maker)

    # Losing access to the target hides it, except from its owner.
    api.ok(REVOKE_GROUP, {"g": ready.group_id, "u": colleague.id}, as_=admin)
    api.ok(REVOKE_GROUP, {"g": ready.group_id, "u": maker.id}, as_=admin)
    assert seen(colleague) == set()
    assert seen(maker) == {mine}


def test_a_machine_joining_a_group_breaks_its_connections_until_retargeted(
    api: Api, admin: Account, make_user: MakeUser, make_machine: MakeMachine, ready: Pool
) -> None:
    no_privilege = make_user()  # sees the group, holds no role with the run privilege
    share_group(api, ready.group_id, no_privilege, "USER", as_=admin)
    machine_id, key = make_machine()
    other_machine, _ = make_machine()
    heartbeat(api, key)
    direct = connection_id(api, as_=admin, machine_id=machine_id)
    untouched = connection_id(api, as_=admin, machine_id=other_machine)

    payload = add_machine(api, machine_id, ready.group_id, as_=admin)

    assert payload["errors"] == []
    assert payload["brokenConnections"] == [
        {
            "id": direct,
            "status": "BROKEN",
            "brokenReason": "MACHINE_JOINED_GROUP",
            "machine": {"id": machine_id},
        }
    ]
    listed = {c["id"]: c for c in api.data(CONNECTIONS, as_=admin)["connections"]}
    assert (listed[direct]["status"], listed[direct]["brokenReason"]) == (
        "BROKEN",
        "MACHINE_JOINED_GROUP",
    )
    assert listed[untouched]["status"] == "ACTIVE"
    assert listed[ready.connection_id]["status"] == "ACTIVE"

    assert codes(start_run(api, direct, as_=admin)) == ["CONNECTION_BROKEN"]
    # The spec's order: refusals and VALIDATION come before the queue's codes.
    assert codes(start_run(api, direct, as_=admin, flow=" ")) == ["VALIDATION"]
    assert codes(start_run(api, direct, as_=no_privilege)) == ["PERMISSION_DENIED"]
    assert runs_page(api, as_=admin)["totalCount"] == 0
    # A machine in a group takes connections only through its group.
    again = api.mutate(UPDATE_CONNECTION, {"id": direct, "m": machine_id}, as_=admin)
    assert codes(again) == ["MANAGED_BY_GROUP"]
    assert codes(create_connection(api, as_=admin, machine_id=machine_id)) == ["MANAGED_BY_GROUP"]

    retargeted = api.ok(UPDATE_CONNECTION, {"id": direct, "g": ready.group_id}, as_=admin)
    connection = retargeted["connection"]
    assert connection["status"] == "ACTIVE"
    assert connection["brokenReason"] is None
    assert connection["group"] == {"id": ready.group_id}
    assert connection["machine"] is None

    queued = started(api, direct, as_=admin)
    assert queued["group"] == {"id": ready.group_id}
    assert claimed(api, key) is not None


def test_a_run_on_an_empty_group_answers_no_machines(
    api: Api, admin: Account, make_group: MakeGroup, make_machine: MakeMachine
) -> None:
    group_id = make_group()
    connection = connection_id(api, as_=admin, group_id=group_id)

    assert codes(start_run(api, connection, as_=admin)) == ["NO_MACHINES"]
    assert runs_page(api, as_=admin)["totalCount"] == 0

    machine_id, _ = make_machine()
    assert add_machine(api, machine_id, group_id, as_=admin)["errors"] == []
    assert start_run(api, connection, as_=admin)["errors"] == []

    api.ok(REMOVE_MACHINE, {"m": machine_id}, as_=admin)
    assert codes(start_run(api, connection, as_=admin)) == ["NO_MACHINES"]
    assert runs_page(api, as_=admin)["totalCount"] == 1


def test_a_queue_holds_at_most_max_queued_runs(
    api: Api, admin: Account, make_group: MakeGroup, make_machine: MakeMachine, ready: Pool
) -> None:
    for _ in range(QUEUE_LIMIT):
        started(api, ready.connection_id, as_=admin)

    assert codes(start_run(api, ready.connection_id, as_=admin)) == ["QUEUE_FULL"]
    assert len(queue_ids(api, ready.group_id, as_=admin)) == QUEUE_LIMIT
    # The limit is per queue: another group's queue is not affected.
    elsewhere = pool(api, admin, make_group, make_machine)
    assert start_run(api, elsewhere.connection_id, as_=admin)["errors"] == []
    # A run that leaves the queue (running, cancelled) frees its place.
    assert claimed(api, ready.key) is not None
    assert start_run(api, ready.connection_id, as_=admin)["errors"] == []
    assert codes(start_run(api, ready.connection_id, as_=admin)) == ["QUEUE_FULL"]
    api.ok(CANCEL_RUN, {"id": queue_ids(api, ready.group_id, as_=admin)[-1]}, as_=admin)
    assert start_run(api, ready.connection_id, as_=admin)["errors"] == []
    assert len(queue_ids(api, ready.group_id, as_=admin)) == QUEUE_LIMIT


# Dispatch order


@pytest.mark.parametrize("queue_limit", [6])
def test_dispatch_order_is_high_normal_low_then_first_in_first_out(
    api: Api, admin: Account, clock: ManualClock, ready: Pool
) -> None:
    priorities = ["LOW", "NORMAL", "HIGH", "NORMAL", "LOW", "HIGH"]
    runs = []
    for priority in priorities:
        runs.append(started(api, ready.connection_id, as_=admin, priority=priority))
        clock.advance(1)
    want = [runs[i]["id"] for i in (2, 5, 1, 3, 0, 4)]

    assert queue_ids(api, ready.group_id, as_=admin) == want
    positions = [run(api, run_id, as_=admin)["queuePosition"] for run_id in want]
    assert positions == [1, 2, 3, 4, 5, 6]
    assert [run(api, r["id"], as_=admin)["priority"] for r in runs] == priorities

    order = []
    for _ in priorities:
        got = claimed(api, ready.key)
        assert got is not None
        assert (got["status"], got["machine"], got["queuePosition"]) == (
            "RUNNING",
            {"id": ready.machine_id},
            None,
        )
        order.append(got["id"])
        assert claimed(api, ready.key) is None  # one run at a time per machine
        assert complete(api, ready.key, got["id"])["errors"] == []
    assert order == want
    assert claimed(api, ready.key) is None


def test_a_run_through_a_machine_connection_goes_to_that_machine_only(
    api: Api, admin: Account, make_machine: MakeMachine, ready: Pool
) -> None:
    standalone, key = make_machine()
    direct = connection_id(api, as_=admin, machine_id=standalone)
    queued = started(api, direct, as_=admin)
    assert (queued["group"], queued["machine"], queued["queuePosition"]) == (
        None,
        {"id": standalone},
        1,
    )

    assert claimed(api, ready.key) is None  # a machine of a group does not take it
    got = claimed(api, key)
    assert got is not None and got["id"] == queued["id"]
    assert claimed(api, key) is None


@pytest.mark.parametrize("queue_limit", [6])
def test_a_machine_takes_its_own_runs_and_its_groups_in_one_dispatch_order(
    api: Api, admin: Account, clock: ManualClock, make_machine: MakeMachine, ready: Pool
) -> None:
    """Runs aimed at a machine before it joined a group stay in its own queue: a claim
    takes the better head of the two queues, by priority, then first in, first out."""
    machine_id, key = make_machine()
    direct = connection_id(api, as_=admin, machine_id=machine_id)
    own_normal = started(api, direct, as_=admin, priority="NORMAL")
    clock.advance(1)
    own_low = started(api, direct, as_=admin, priority="LOW")
    clock.advance(1)
    assert add_machine(api, machine_id, ready.group_id, as_=admin)["errors"] == []
    group_runs = {}
    for priority in ("HIGH", "NORMAL", "LOW"):
        group_runs[priority] = started(api, ready.connection_id, as_=admin, priority=priority)
        clock.advance(1)
    want = [
        group_runs["HIGH"]["id"],
        own_normal["id"],
        group_runs["NORMAL"]["id"],
        own_low["id"],
        group_runs["LOW"]["id"],
    ]

    order = []
    for _ in want:
        got = claimed(api, key)
        assert got is not None
        order.append(got["id"])
        assert complete(api, key, got["id"])["errors"] == []
    assert order == want
    assert claimed(api, key) is None


def test_set_run_priority_keeps_the_enqueue_time_within_the_new_priority(
    api: Api, admin: Account, clock: ManualClock, ready: Pool
) -> None:
    a = started(api, ready.connection_id, as_=admin, priority="NORMAL")
    clock.advance(1)
    b = started(api, ready.connection_id, as_=admin, priority="HIGH")
    clock.advance(1)
    c = started(api, ready.connection_id, as_=admin, priority="HIGH")
    assert queue_ids(api, ready.group_id, as_=admin) == [b["id"], c["id"], a["id"]]

    raised = api.ok(SET_PRIORITY, {"id": a["id"], "p": "HIGH"}, as_=admin)["run"]
    assert raised["priority"] == "HIGH"
    assert raised["enqueuedAt"] == a["enqueuedAt"]
    assert raised["queuePosition"] == 1
    assert queue_ids(api, ready.group_id, as_=admin) == [a["id"], b["id"], c["id"]]
    api.ok(SET_PRIORITY, {"id": b["id"], "p": "LOW"}, as_=admin)
    assert queue_ids(api, ready.group_id, as_=admin) == [a["id"], c["id"], b["id"]]

    # While running: CONFLICT, and the priority stays.
    assert claimed(api, ready.key) == run(api, a["id"], as_=admin)
    payload = api.mutate(SET_PRIORITY, {"id": a["id"], "p": "LOW"}, as_=admin)
    assert codes(payload) == ["CONFLICT"]
    assert run(api, a["id"], as_=admin)["priority"] == "HIGH"
    # Once final: RUN_NOT_ACTIVE.
    assert complete(api, ready.key, a["id"])["errors"] == []
    payload = api.mutate(SET_PRIORITY, {"id": a["id"], "p": "LOW"}, as_=admin)
    assert codes(payload) == ["RUN_NOT_ACTIVE"]
    api.ok(CANCEL_RUN, {"id": c["id"]}, as_=admin)
    payload = api.mutate(SET_PRIORITY, {"id": c["id"], "p": "HIGH"}, as_=admin)
    assert codes(payload) == ["RUN_NOT_ACTIVE"]
    assert run(api, c["id"], as_=admin)["priority"] == "HIGH"


# Cancelling


def test_cancelling_a_queued_run_ends_it_at_once(
    api: Api, admin: Account, clock: ManualClock, ready: Pool
) -> None:
    queued = started(api, ready.connection_id, as_=admin)
    clock.advance(5)

    cancelled = api.ok(CANCEL_RUN, {"id": queued["id"]}, as_=admin)["run"]

    assert (cancelled["status"], cancelled["failureReason"]) == ("CANCELLED", "CANCELLED_BY_USER")
    assert moment(cancelled["finishedAt"]) == clock.now()
    assert cancelled["queuePosition"] is None
    assert queue_ids(api, ready.group_id, as_=admin) == []
    assert claimed(api, ready.key) is None
    assert codes(api.mutate(CANCEL_RUN, {"id": queued["id"]}, as_=admin)) == ["RUN_NOT_ACTIVE"]


def test_cancelling_a_running_run_reaches_its_agent_at_its_next_call(
    api: Api, admin: Account, ready: Pool
) -> None:
    running = started(api, ready.connection_id, as_=admin)
    assert claimed(api, ready.key) is not None
    assert heartbeat(api, ready.key)["currentRun"] == {"id": running["id"], "status": "RUNNING"}

    cancelled = api.ok(CANCEL_RUN, {"id": running["id"]}, as_=admin)["run"]

    assert (cancelled["status"], cancelled["failureReason"]) == ("CANCELLED", "CANCELLED_BY_USER")
    assert heartbeat(api, ready.key)["currentRun"] is None
    payload = complete(api, ready.key, running["id"], output={"done": True})
    assert codes(payload) == ["RUN_NOT_ACTIVE"]
    after = run(api, running["id"], as_=admin)
    assert (after["status"], after["failureReason"], after["output"]) == (
        "CANCELLED",
        "CANCELLED_BY_USER",
        None,
    )
    # The machine is free again for the next run.
    following = started(api, ready.connection_id, as_=admin)
    got = claimed(api, ready.key)
    assert got is not None and got["id"] == following["id"]


def test_only_the_starter_or_a_co_owner_may_cancel_or_reprioritise(
    api: Api, admin: Account, make_user: MakeUser, ready: Pool
) -> None:
    starter = make_user(roles=["DESKTOP_FLOWS_MACHINE_USER"])
    other = make_user(roles=["DESKTOP_FLOWS_MACHINE_USER"])
    co_owner = make_user(roles=["DESKTOP_FLOWS_MACHINE_OWNER"])
    stranger = make_user(roles=["DESKTOP_FLOWS_MACHINE_OWNER"])
    share_group(api, ready.group_id, starter, "USER", as_=admin)
    share_group(api, ready.group_id, other, "USER", as_=admin)
    share_group(api, ready.group_id, co_owner, "CO_OWNER", as_=admin)
    first = started(api, ready.connection_id, as_=starter)
    second = started(api, ready.connection_id, as_=starter)

    # Neither starter nor co-owner, though they see the run: PERMISSION_DENIED.
    assert run(api, first["id"], as_=other)["status"] == "QUEUED"
    assert codes(api.mutate(CANCEL_RUN, {"id": first["id"]}, as_=other)) == ["PERMISSION_DENIED"]
    payload = api.mutate(SET_PRIORITY, {"id": first["id"], "p": "HIGH"}, as_=other)
    assert codes(payload) == ["PERMISSION_DENIED"]
    # Not seeing it at all: NOT_FOUND.
    assert codes(api.mutate(CANCEL_RUN, {"id": first["id"]}, as_=stranger)) == ["NOT_FOUND"]
    after = run(api, first["id"], as_=admin)
    assert (after["status"], after["priority"]) == ("QUEUED", "NORMAL")

    # The starter and a co-owner of the target may.
    api.ok(SET_PRIORITY, {"id": first["id"], "p": "HIGH"}, as_=co_owner)
    api.ok(SET_PRIORITY, {"id": second["id"], "p": "LOW"}, as_=starter)
    assert run(api, first["id"], as_=admin)["status"] == "QUEUED"
    assert api.ok(CANCEL_RUN, {"id": first["id"]}, as_=co_owner)["run"]["status"] == "CANCELLED"
    assert api.ok(CANCEL_RUN, {"id": second["id"]}, as_=starter)["run"]["status"] == "CANCELLED"


# The agent's reports


def test_a_machine_that_does_not_hold_a_run_gets_lease_lost_whatever_its_status(
    api: Api, admin: Account, make_group: MakeGroup, make_machine: MakeMachine
) -> None:
    two = pool(api, admin, make_group, make_machine, machines=2)
    (holder_id, holder), (_, other) = two.machines
    target = started(api, two.connection_id, as_=admin)

    assert codes(complete(api, other, target["id"])) == ["LEASE_LOST"]  # queued
    assert run(api, target["id"], as_=admin)["status"] == "QUEUED"
    got = claimed(api, holder)
    assert got is not None and got["id"] == target["id"]
    assert codes(complete(api, other, target["id"], output={"x": 1})) == ["LEASE_LOST"]  # running
    now = run(api, target["id"], as_=admin)
    assert (now["status"], now["machine"], now["output"]) == ("RUNNING", {"id": holder_id}, None)
    assert complete(api, holder, target["id"], output={"x": 2})["errors"] == []
    assert codes(complete(api, other, target["id"], "FAILED")) == ["LEASE_LOST"]  # final
    final = run(api, target["id"], as_=admin)
    assert (final["status"], final["output"], final["failureReason"]) == (
        "SUCCEEDED",
        {"x": 2},
        None,
    )

    cancelled = started(api, two.connection_id, as_=admin)
    assert claimed(api, holder) is not None
    api.ok(CANCEL_RUN, {"id": cancelled["id"]}, as_=admin)
    assert codes(complete(api, other, cancelled["id"])) == ["LEASE_LOST"]
    assert codes(complete(api, holder, cancelled["id"])) == ["RUN_NOT_ACTIVE"]


def test_completing_a_run_twice_answers_run_not_active(
    api: Api, admin: Account, clock: ManualClock, ready: Pool
) -> None:
    target = started(api, ready.connection_id, as_=admin)
    assert claimed(api, ready.key) is not None
    clock.advance(7)

    failed = complete(api, ready.key, target["id"], "FAILED", message="the window was gone")
    assert failed["errors"] == []
    assert (failed["run"]["status"], failed["run"]["failureReason"]) == (
        "FAILED",
        "the window was gone",
    )
    assert moment(failed["run"]["finishedAt"]) == clock.now()

    clock.advance(3)
    again = complete(api, ready.key, target["id"], "SUCCEEDED", output={"late": True})
    assert codes(again) == ["RUN_NOT_ACTIVE"]
    after = run(api, target["id"], as_=admin)
    assert after == failed["run"]


# Maintenance


def test_a_group_in_maintenance_dispatches_nothing_but_keeps_queuing(
    api: Api, admin: Account, ready: Pool
) -> None:
    running = started(api, ready.connection_id, as_=admin)
    assert claimed(api, ready.key) is not None

    set_maintenance(api, ready.group_id, True, as_=admin)
    assert heartbeat(api, ready.key)["status"] == "MAINTENANCE"
    waiting = started(api, ready.connection_id, as_=admin)  # runs keep queuing
    assert waiting["status"] == "QUEUED"
    # Running runs finish; nothing new is dispatched.
    assert complete(api, ready.key, running["id"])["errors"] == []
    assert claimed(api, ready.key) is None
    assert claimed(api, ready.key) is None
    assert queue_ids(api, ready.group_id, as_=admin) == [waiting["id"]]

    set_maintenance(api, ready.group_id, False, as_=admin)
    assert heartbeat(api, ready.key)["status"] == "ONLINE"
    got = claimed(api, ready.key)
    assert got is not None and got["id"] == waiting["id"]


# Deleting a group


def test_deleting_a_group_cancels_its_queued_runs_with_group_deleted(
    api: Api, admin: Account, clock: ManualClock, ready: Pool
) -> None:
    queued = [started(api, ready.connection_id, as_=admin) for _ in range(2)]
    payload = api.mutate(DELETE_GROUP, {"id": ready.group_id}, as_=admin)
    assert codes(payload) == ["GROUP_NOT_EMPTY"]
    assert [run(api, r["id"], as_=admin)["status"] for r in queued] == ["QUEUED", "QUEUED"]

    api.ok(REMOVE_MACHINE, {"m": ready.machine_id}, as_=admin)
    clock.advance(2)
    assert api.ok(DELETE_GROUP, {"id": ready.group_id}, as_=admin)["deletedId"] == ready.group_id

    for queued_run in queued:
        after = run(api, queued_run["id"], as_=admin)
        assert (after["status"], after["failureReason"]) == ("CANCELLED", "GROUP_DELETED")
        assert moment(after["finishedAt"]) == clock.now()
    connection = api.data(CONNECTIONS, as_=admin)["connections"][0]
    assert connection["status"] == "BROKEN"


# Timeouts (the sweeper, on the test's clock)


@pytest.mark.parametrize("maintenance", [False, True])
def test_a_run_queued_longer_than_max_queue_seconds_fails_with_queue_timeout(
    api: Api, admin: Account, server: LiveServer, clock: ManualClock, ready: Pool, maintenance: bool
) -> None:
    if maintenance:  # the queue timeout counts in maintenance too
        set_maintenance(api, ready.group_id, True, as_=admin)
    queued = started(api, ready.connection_id, as_=admin)
    limit = server.settings.max_queue_seconds

    clock.advance(limit - 1)
    sweep_now(server)
    assert run(api, queued["id"], as_=admin)["status"] == "QUEUED"
    clock.advance(2)
    sweep_now(server)
    expired = run(api, queued["id"], as_=admin)
    assert (expired["status"], expired["failureReason"]) == ("FAILED", "QUEUE_TIMEOUT")
    assert moment(expired["finishedAt"]) == clock.now()
    assert expired["startedAt"] is None

    # A second sweep expires nothing again, and the run is never started.
    clock.advance(60)
    sweep_now(server)
    assert run(api, queued["id"], as_=admin) == expired
    set_maintenance(api, ready.group_id, False, as_=admin)
    assert claimed(api, ready.key) is None
    assert run(api, queued["id"], as_=admin) == expired


def test_a_run_running_longer_than_max_run_seconds_times_out(
    api: Api, admin: Account, server: LiveServer, clock: ManualClock, ready: Pool
) -> None:
    assert server.settings.max_run_seconds == RUN_LIMIT
    running = started(api, ready.connection_id, as_=admin)
    assert claimed(api, ready.key) is not None
    # The agent keeps heartbeating: only the run's own limit applies.
    for _ in range(RUN_LIMIT // 20):
        clock.advance(20)
        heartbeat(api, ready.key)
        sweep_now(server)
    assert run(api, running["id"], as_=admin)["status"] == "RUNNING"  # exactly at the limit

    clock.advance(1)
    sweep_now(server)
    expired = run(api, running["id"], as_=admin)
    assert (expired["status"], expired["failureReason"]) == ("TIMED_OUT", "RUN_TIMEOUT")
    assert moment(expired["finishedAt"]) == clock.now()

    assert heartbeat(api, ready.key)["currentRun"] is None
    assert codes(complete(api, ready.key, running["id"])) == ["RUN_NOT_ACTIVE"]
    clock.advance(5)
    sweep_now(server)
    assert claimed(api, ready.key) is None  # not started again
    assert run(api, running["id"], as_=admin) == expired


def test_a_running_run_whose_machine_stops_heartbeating_fails_with_machine_lost(
    api: Api,
    admin: Account,
    server: LiveServer,
    clock: ManualClock,
    make_group: MakeGroup,
    make_machine: MakeMachine,
) -> None:
    two = pool(api, admin, make_group, make_machine, machines=2)
    (_, lost), (_, healthy) = two.machines
    running = started(api, two.connection_id, as_=admin)
    assert claimed(api, lost) is not None
    timeout = server.settings.machine_timeout

    clock.advance(timeout - 1)
    heartbeat(api, healthy)
    sweep_now(server)
    assert run(api, running["id"], as_=admin)["status"] == "RUNNING"
    clock.advance(2)
    heartbeat(api, healthy)
    sweep_now(server)
    ended = run(api, running["id"], as_=admin)
    assert (ended["status"], ended["failureReason"]) == ("FAILED", "MACHINE_LOST")
    assert moment(ended["finishedAt"]) == clock.now()

    # Never restarted: no machine gets it again, and a second sweep changes nothing.
    assert claimed(api, healthy) is None
    clock.advance(timeout * 2)
    heartbeat(api, healthy)
    sweep_now(server)
    assert run(api, running["id"], as_=admin) == ended
    # The machine, back, learns it at its next call.
    assert heartbeat(api, lost)["currentRun"] is None
    assert codes(complete(api, lost, running["id"])) == ["RUN_NOT_ACTIVE"]
    assert claimed(api, lost) is None
    assert run(api, running["id"], as_=admin) == ended


# Long-polling


class BackgroundClaim:
    """claimNextRun(waitSeconds) by a machine agent, in a thread of its own."""

    def __init__(self, server: LiveServer, key: str, wait: int) -> None:
        self.server, self.key, self.wait = server, key, wait
        self.body: dict[str, Any] | None = None
        self.returned_at = 0.0
        self.thread = threading.Thread(target=self._claim, daemon=True)

    def _claim(self) -> None:
        with httpx.Client(timeout=30) as client:
            response = client.post(
                self.server.url,
                json={"query": CLAIM, "variables": {"w": self.wait}},
                headers={"Authorization": f"Bearer {self.key}"},
            )
        self.body = response.json()
        self.returned_at = time.monotonic()

    def _listeners(self) -> int:
        async def count() -> int:
            return self.server.state.bus.listener_count()

        return self.server.run(count())

    def start(self) -> BackgroundClaim:
        """Start the claim and wait (at most 5 s) until it is waiting for work."""
        before = self._listeners()
        self.thread.start()
        deadline = time.monotonic() + 5
        while self._listeners() == before and time.monotonic() < deadline:
            time.sleep(0.02)
        assert self._listeners() > before, "the claim is not waiting"
        assert self.body is None, "the claim returned without waiting"
        return self

    def result(self) -> dict[str, Any]:
        """The claim's payload, once it returned (at most 10 s from now)."""
        self.thread.join(timeout=10)
        assert not self.thread.is_alive()
        assert self.body is not None
        payload: dict[str, Any] = self.body["data"]["claimNextRun"]
        return payload


def test_claim_with_wait_returns_as_soon_as_a_run_is_started(
    api: Api, admin: Account, server: LiveServer, ready: Pool
) -> None:
    waiting = BackgroundClaim(server, ready.key, wait=5).start()

    queued = started(api, ready.connection_id, as_=admin)
    started_at = time.monotonic()

    payload = waiting.result()
    assert payload["errors"] == []
    assert payload["run"]["id"] == queued["id"]
    assert payload["run"]["status"] == "RUNNING"
    assert waiting.returned_at - started_at < 1.5  # well before the 5 seconds


def test_a_waiting_claim_gets_work_as_soon_as_maintenance_ends(
    api: Api, admin: Account, server: LiveServer, ready: Pool
) -> None:
    set_maintenance(api, ready.group_id, True, as_=admin)
    queued = started(api, ready.connection_id, as_=admin)
    waiting = BackgroundClaim(server, ready.key, wait=5).start()
    time.sleep(0.3)
    assert waiting.body is None  # still waiting: maintenance dispatches nothing

    set_maintenance(api, ready.group_id, False, as_=admin)
    switched_at = time.monotonic()

    payload = waiting.result()
    assert payload["errors"] == []
    assert payload["run"]["id"] == queued["id"]
    assert waiting.returned_at - switched_at < 1.5


def test_claim_with_wait_and_no_work_returns_null_after_the_wait(api: Api, ready: Pool) -> None:
    before = time.monotonic()
    payload = claim(api, ready.key, wait=1)
    elapsed = time.monotonic() - before
    assert payload == {"run": None, "errors": []}
    assert 0.9 <= elapsed < 4


def test_one_machine_claiming_many_times_at_once_holds_one_run(
    api: Api, admin: Account, ready: Pool
) -> None:
    queued = [started(api, ready.connection_id, as_=admin) for _ in range(3)]
    with ThreadPoolExecutor(max_workers=8) as claimers:
        payloads = list(claimers.map(lambda _: claim(api, ready.key), range(8)))

    assert all(payload["errors"] == [] for payload in payloads)
    granted = [payload["run"]["id"] for payload in payloads if payload["run"] is not None]
    assert granted == [queued[0]["id"]]  # the first in the queue, once
    assert [run(api, q["id"], as_=admin)["status"] for q in queued] == [
        "RUNNING",
        "QUEUED",
        "QUEUED",
    ]


# History and estimates


def test_runs_lists_history_newest_first_with_filters_and_cursor_pages(
    api: Api,
    admin: Account,
    make_user: MakeUser,
    clock: ManualClock,
    make_machine: MakeMachine,
    ready: Pool,
) -> None:
    member = make_user(roles=["DESKTOP_FLOWS_MACHINE_USER"])  # before the clock moves
    standalone, _ = make_machine()
    direct = connection_id(api, as_=admin, machine_id=standalone)

    def later(connection: str) -> str:
        clock.advance(1)
        run_id: str = started(api, connection, as_=admin)["id"]
        return run_id

    r1 = later(ready.connection_id)
    assert claimed(api, ready.key) is not None
    assert complete(api, ready.key, r1)["errors"] == []
    r2 = later(ready.connection_id)
    api.ok(CANCEL_RUN, {"id": r2}, as_=admin)
    r3 = later(direct)
    r4 = later(ready.connection_id)
    r5 = later(ready.connection_id)
    api.ok(SET_PRIORITY, {"id": r5, "p": "HIGH"}, as_=admin)
    assert claimed(api, ready.key) is not None
    assert complete(api, ready.key, r5, "FAILED")["errors"] == []

    everything = runs_page(api, as_=admin)
    assert run_ids(everything) == [r5, r4, r3, r2, r1]
    assert everything["totalCount"] == 5
    assert everything["pageInfo"]["hasNextPage"] is False
    assert run_ids(runs_page(api, as_=admin, group=ready.group_id)) == [r5, r4, r2, r1]
    assert run_ids(runs_page(api, as_=admin, machine=standalone)) == [r3]
    assert run_ids(runs_page(api, as_=admin, machine=ready.machine_id)) == [r5, r1]
    assert run_ids(runs_page(api, as_=admin, status=["QUEUED"])) == [r4, r3]
    assert run_ids(runs_page(api, as_=admin, status=["SUCCEEDED", "FAILED"])) == [r5, r1]
    filtered = runs_page(api, as_=admin, group=ready.group_id, status=["QUEUED", "CANCELLED"])
    assert (run_ids(filtered), filtered["totalCount"]) == ([r4, r2], 2)

    pages, after = [], None
    for _ in range(3):
        page = runs_page(api, as_=admin, first=2, after=after)
        assert page["totalCount"] == 5
        pages.append((run_ids(page), page["pageInfo"]["hasNextPage"]))
        after = page["pageInfo"]["endCursor"]
    assert pages == [([r5, r4], True), ([r3, r2], True), ([r1], False)]

    # Only runs whose queue the viewer sees.
    assert runs_page(api, as_=member)["totalCount"] == 0
    share_group(api, ready.group_id, member, "USER", as_=admin)
    assert run_ids(runs_page(api, as_=member)) == [r5, r4, r2, r1]


def test_estimated_start_is_null_without_history_then_follows_recent_durations(
    api: Api, admin: Account, clock: ManualClock, ready: Pool
) -> None:
    first = started(api, ready.connection_id, as_=admin)
    assert first["estimatedStartAt"] is None  # nothing has finished here yet
    assert run(api, first["id"], as_=admin)["estimatedStartAt"] is None
    for duration in (60, 120):  # two runs, 90 s on average
        finished = first if duration == 60 else started(api, ready.connection_id, as_=admin)
        assert claimed(api, ready.key) is not None
        clock.advance(duration)
        assert complete(api, ready.key, finished["id"])["errors"] == []
        assert run(api, finished["id"], as_=admin)["estimatedStartAt"] is None  # not queued

    clock.advance(1)
    next_up = started(api, ready.connection_id, as_=admin)
    clock.advance(1)
    behind = started(api, ready.connection_id, as_=admin)
    now = clock.now()
    assert moment(run(api, next_up["id"], as_=admin)["estimatedStartAt"]) == now
    assert moment(run(api, behind["id"], as_=admin)["estimatedStartAt"]) == now + timedelta(
        seconds=90
    )
    # With the only machine busy, the next queued run waits one average run.
    assert claimed(api, ready.key) is not None
    assert moment(run(api, behind["id"], as_=admin)["estimatedStartAt"]) == now + timedelta(
        seconds=90
    )
    assert run(api, next_up["id"], as_=admin)["estimatedStartAt"] is None
