"""GraphQL helpers for the queue, dispatch and live-status API tests.

Everything goes through the public API (users with tokens, agents with machine keys);
only `connection_row` reads the database, to check what is stored.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from app.db.models import Connection
from tests.api.conftest import Account, Api
from tests.server import LiveServer

MakeGroup = Callable[..., str]
MakeMachine = Callable[..., tuple[str, str]]

GROUP_PASSWORD = "a long group secret"
ACCOUNT_PASSWORD = "Pa55word-on-the-VM!"
_names = itertools.count(1)

RUN_FIELDS = """
  id flowName status priority queuePosition estimatedStartAt enqueuedAt startedAt finishedAt
  failureReason output group { id } machine { id } startedBy { name }
"""

CONNECTION_FIELDS = (
    "id name username status brokenReason owner { name } machine { id } group { id }"
)

CREATE_CONNECTION = f"""
mutation($n: String!, $m: ID, $g: ID, $u: String!, $p: String!) {{
  createConnection(input: {{name: $n, machineId: $m, groupId: $g, username: $u, password: $p}}) {{
    connection {{ {CONNECTION_FIELDS} }} errors {{ code field }}
  }}
}}"""

UPDATE_CONNECTION = f"""
mutation($id: ID!, $m: ID, $g: ID, $u: String, $p: String) {{
  updateConnection(input: {{id: $id, machineId: $m, groupId: $g, username: $u, password: $p}}) {{
    connection {{ {CONNECTION_FIELDS} }} errors {{ code field }}
  }}
}}"""

CONNECTIONS = f"{{ connections {{ {CONNECTION_FIELDS} }} }}"

START_RUN = f"""
mutation($c: ID!, $f: String!, $p: RunPriority, $i: JSON) {{
  startRun(input: {{connectionId: $c, flowName: $f, priority: $p, inputs: $i}}) {{
    run {{ {RUN_FIELDS} }} errors {{ code field }}
  }}
}}"""

CANCEL_RUN = f"""
mutation($id: ID!) {{ cancelRun(id: $id) {{ run {{ {RUN_FIELDS} }} errors {{ code }} }} }}"""

SET_PRIORITY = f"""
mutation($id: ID!, $p: RunPriority!) {{
  setRunPriority(id: $id, priority: $p) {{ run {{ {RUN_FIELDS} }} errors {{ code }} }}
}}"""

CLAIM = f"""
mutation($w: Int) {{
  claimNextRun(waitSeconds: $w) {{ run {{ {RUN_FIELDS} }} errors {{ code }} }}
}}"""

COMPLETE = f"""
mutation($id: ID!, $o: RunOutcome!, $out: JSON, $msg: String) {{
  completeRun(id: $id, outcome: $o, output: $out, message: $msg) {{
    run {{ {RUN_FIELDS} }} errors {{ code }}
  }}
}}"""

HEARTBEAT = """
mutation { heartbeat { machine { id status currentRun { id status } } errors { code } } }"""

RUN = f"query($id: ID!) {{ run(id: $id) {{ {RUN_FIELDS} }} }}"

QUEUE = """
query($g: ID!) {
  machineGroup(id: $g) { queuedCount runningCount queue { id priority queuePosition } }
}"""

ADD_MACHINE = """
mutation($m: ID!, $g: ID!, $p: String!) {
  addMachineToGroup(input: {machineId: $m, groupId: $g, password: $p}) {
    machine { id group { id } } brokenConnections { id status brokenReason machine { id } }
    errors { code }
  }
}"""

REMOVE_MACHINE = """
mutation($m: ID!) { removeMachineFromGroup(machineId: $m) { errors { code } } }"""

MAINTENANCE = """
mutation($g: ID!, $on: Boolean!) {
  setMachineGroupMaintenance(id: $g, enabled: $on) { machineGroup { maintenance } errors { code } }
}"""

DELETE_GROUP = "mutation($id: ID!) { deleteMachineGroup(id: $id) { deletedId errors { code } } }"

SHARE_GROUP = """
mutation($g: ID!, $u: ID!, $a: ShareLevel!) {
  shareMachineGroup(input: {groupId: $g, userId: $u, access: $a}) { errors { code } }
}"""

REVOKE_GROUP = """
mutation($g: ID!, $u: ID!) {
  revokeMachineGroupAccess(groupId: $g, userId: $u) { errors { code } }
}"""

DEACTIVATE = "mutation($id: ID!) { deactivateUser(userId: $id) { errors { code } } }"


def codes(payload: dict[str, Any]) -> list[str]:
    """The codes of a payload's errors."""
    return [error["code"] for error in payload["errors"]]


def add_machine(api: Api, machine_id: str, group_id: str, *, as_: Account) -> dict[str, Any]:
    """The payload of addMachineToGroup, with the test's group password."""
    return api.mutate(ADD_MACHINE, {"m": machine_id, "g": group_id, "p": GROUP_PASSWORD}, as_=as_)


def share_group(api: Api, group_id: str, user: Account, level: str, *, as_: Account) -> None:
    """Grant `level` on a group; must succeed."""
    api.ok(SHARE_GROUP, {"g": group_id, "u": user.id, "a": level}, as_=as_)


def create_connection(
    api: Api,
    *,
    as_: Account,
    group_id: str | None = None,
    machine_id: str | None = None,
    password: str = ACCOUNT_PASSWORD,
    name: str | None = None,
) -> dict[str, Any]:
    """The payload of createConnection to a group or a machine."""
    return api.mutate(
        CREATE_CONNECTION,
        {
            "n": name or f"connection {next(_names)}",
            "m": machine_id,
            "g": group_id,
            "u": "robot",
            "p": password,
        },
        as_=as_,
    )


def connection_id(api: Api, *, as_: Account, **target: str) -> str:
    """A new connection's id (must succeed)."""
    payload = create_connection(api, as_=as_, **target)
    assert payload["errors"] == [], payload["errors"]
    found: str = payload["connection"]["id"]
    return found


def start_run(
    api: Api,
    connection: str,
    *,
    as_: Account,
    priority: str | None = None,
    flow: str = "Invoice",
    inputs: Any = None,
) -> dict[str, Any]:
    """The payload of startRun."""
    return api.mutate(START_RUN, {"c": connection, "f": flow, "p": priority, "i": inputs}, as_=as_)


def started(
    api: Api, connection: str, *, as_: Account, priority: str | None = None, flow: str = "Invoice"
) -> dict[str, Any]:
    """A run that must start."""
    payload = start_run(api, connection, as_=as_, priority=priority, flow=flow)
    assert payload["errors"] == [], payload["errors"]
    run: dict[str, Any] = payload["run"]
    return run


def claim(api: Api, key: str, wait: int = 0) -> dict[str, Any]:
    """The payload of claimNextRun as the machine with this key."""
    return api.mutate(CLAIM, {"w": wait}, as_=key)


def claimed(api: Api, key: str) -> dict[str, Any] | None:
    """The run a claim returns (None: nothing), failing on errors."""
    payload = claim(api, key)
    assert payload["errors"] == [], payload["errors"]
    run: dict[str, Any] | None = payload["run"]
    return run


def complete(
    api: Api, key: str, run_id: str, outcome: str = "SUCCEEDED", **extra: Any
) -> dict[str, Any]:
    """The payload of completeRun as the machine with this key."""
    return api.mutate(
        COMPLETE,
        {"id": run_id, "o": outcome, "out": extra.get("output"), "msg": extra.get("message")},
        as_=key,
    )


def heartbeat(api: Api, key: str) -> dict[str, Any]:
    """The machine as its heartbeat shows it."""
    payload = api.ok(HEARTBEAT, as_=key)
    machine: dict[str, Any] = payload["machine"]
    return machine


def run(api: Api, run_id: str, *, as_: Account) -> dict[str, Any]:
    """A run the viewer must see."""
    found: dict[str, Any] | None = api.data(RUN, {"id": run_id}, as_=as_)["run"]
    assert found is not None, f"run {run_id} is not visible"
    return found


def queue_ids(api: Api, group_id: str, *, as_: Account) -> list[str]:
    """The group's queued runs, in dispatch order."""
    group = api.data(QUEUE, {"g": group_id}, as_=as_)["machineGroup"]
    return [entry["id"] for entry in group["queue"]]


def set_maintenance(api: Api, group_id: str, on: bool, *, as_: Account) -> None:
    """Switch a group's maintenance; must succeed."""
    api.ok(MAINTENANCE, {"g": group_id, "on": on}, as_=as_)


@dataclass
class Pool:
    """A group with machines (each with its agent's key) and a connection to the group."""

    group_id: str
    connection_id: str
    machines: list[tuple[str, str]] = field(default_factory=list)

    @property
    def key(self) -> str:
        """The first machine's key."""
        return self.machines[0][1]

    @property
    def machine_id(self) -> str:
        """The first machine's id."""
        return self.machines[0][0]


def pool(
    api: Api,
    admin: Account,
    make_group: MakeGroup,
    make_machine: MakeMachine,
    *,
    machines: int = 1,
    owner: Account | None = None,
) -> Pool:
    """A group of `machines` machines (online: each has sent a heartbeat) and a connection."""
    owner = owner or admin
    group_id = make_group(owner=owner)
    made = []
    for _ in range(machines):
        machine_id, key = make_machine()
        assert add_machine(api, machine_id, group_id, as_=admin)["errors"] == []
        heartbeat(api, key)
        made.append((machine_id, key))
    return Pool(group_id, connection_id(api, as_=owner, group_id=group_id), made)


def connection_row(server: LiveServer, connection: str) -> Connection:
    """A connection's row, read straight from the database."""

    async def read() -> Connection:
        async with server.state.db.read() as session:
            row = await session.get(Connection, connection)
            assert row is not None
            return row

    return server.run(read())
