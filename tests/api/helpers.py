"""Small GraphQL helpers shared by the API tests of groups, machines and their rules."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import func, select
from sqlmodel import col

from app.db.models import Machine, MachineGroup
from tests.api.conftest import Account, Api
from tests.server import LiveServer

PASSWORD = "correct horse battery"  # long enough for a first group password

ADD = """
mutation($m: ID!, $g: ID!, $p: String!) {
  addMachineToGroup(input: {machineId: $m, groupId: $g, password: $p}) {
    machine { id group { id } } errors { code field }
  }
}"""

REMOVE = """
mutation($m: ID!) {
  removeMachineFromGroup(machineId: $m) { machine { id group { id } } errors { code } }
}"""

SHARE_GROUP = """
mutation($g: ID!, $u: ID!, $a: ShareLevel!) {
  shareMachineGroup(input: {groupId: $g, userId: $u, access: $a}) {
    grant { user { name } access } errors { code }
  }
}"""

REVOKE_GROUP = """
mutation($g: ID!, $u: ID!) {
  revokeMachineGroupAccess(groupId: $g, userId: $u) { grant { access } errors { code } }
}"""

SHARE_MACHINE = """
mutation($m: ID!, $u: ID!, $a: ShareLevel!) {
  shareMachine(input: {machineId: $m, userId: $u, access: $a}) {
    grant { user { name } access } errors { code }
  }
}"""

REVOKE_MACHINE = """
mutation($m: ID!, $u: ID!) {
  revokeMachineAccess(machineId: $m, userId: $u) { grant { access } errors { code } }
}"""

REGENERATE = """
mutation($g: ID!) { regenerateMachineGroupPassword(id: $g) { password errors { code } } }"""

GROUP = """
query($g: ID!) {
  machineGroup(id: $g) {
    id name description hasPassword machineCount myAccess hasDeactivatedUsers
    machines { id }
    access { user { name deactivated } access }
  }
}"""

MACHINE = """
query($m: ID!) { machine(id: $m) { id name myAccess group { id } } }"""

CREATE_GROUP = """
mutation($e: ID, $n: String!, $d: String) {
  createMachineGroup(input: {environmentId: $e, name: $n, description: $d}) {
    machineGroup { id name description } errors { code field }
  }
}"""
UPDATE_GROUP = """
mutation($id: ID!, $n: String, $d: String) {
  updateMachineGroup(input: {id: $id, name: $n, description: $d}) {
    machineGroup { name description } errors { code field }
  }
}"""
REGISTER = """
mutation($e: ID, $n: String!) {
  registerMachine(input: {environmentId: $e, name: $n}) {
    machine { id name } machineKey errors { code field }
  }
}"""
DELETE_GROUP = "mutation($id: ID!) { deleteMachineGroup(id: $id) { deletedId errors { code } } }"


def create_environment(api: Api, admin: Account, name: str, region: str) -> dict[str, Any]:
    """A new environment, created by the administrator."""
    payload = api.ok(
        "mutation($n: String!, $r: String!) { createEnvironment(input: {name: $n, region: $r}) {"
        " environment { id name region machineGroupsAvailable } errors { code } } }",
        {"n": name, "r": region},
        as_=admin,
    )
    environment: dict[str, Any] = payload["environment"]
    return environment


def add_machine(
    api: Api, machine_id: str, group_id: str, password: str = PASSWORD, *, as_: Account
) -> dict[str, Any]:
    """The payload of addMachineToGroup."""
    return api.mutate(ADD, {"m": machine_id, "g": group_id, "p": password}, as_=as_)


def group_with_password(
    api: Api, admin: Account, make_group: Callable[..., str], make_machine: Callable[..., Any]
) -> str:
    """A new group whose first machine, added by the admin, set PASSWORD."""
    group_id = make_group()
    first, _key = make_machine()
    assert add_machine(api, first, group_id, as_=admin)["errors"] == []
    return group_id


def remove_machine(api: Api, machine_id: str, *, as_: Account) -> dict[str, Any]:
    """The payload of removeMachineFromGroup."""
    return api.mutate(REMOVE, {"m": machine_id}, as_=as_)


def share_group(
    api: Api, group_id: str, user: Account | str, level: str, *, as_: Account
) -> dict[str, Any]:
    """The payload of shareMachineGroup (`user`: an account or a user id)."""
    user_id = user.id if isinstance(user, Account) else user
    return api.mutate(SHARE_GROUP, {"g": group_id, "u": user_id, "a": level}, as_=as_)


def revoke_group(api: Api, group_id: str, user: Account | str, *, as_: Account) -> dict[str, Any]:
    """The payload of revokeMachineGroupAccess."""
    user_id = user.id if isinstance(user, Account) else user
    return api.mutate(REVOKE_GROUP, {"g": group_id, "u": user_id}, as_=as_)


def share_machine(
    api: Api, machine_id: str, user: Account | str, level: str, *, as_: Account
) -> dict[str, Any]:
    """The payload of shareMachine."""
    user_id = user.id if isinstance(user, Account) else user
    return api.mutate(SHARE_MACHINE, {"m": machine_id, "u": user_id, "a": level}, as_=as_)


def revoke_machine(
    api: Api, machine_id: str, user: Account | str, *, as_: Account
) -> dict[str, Any]:
    """The payload of revokeMachineAccess."""
    user_id = user.id if isinstance(user, Account) else user
    return api.mutate(REVOKE_MACHINE, {"m": machine_id, "u": user_id}, as_=as_)


def regenerate(api: Api, group_id: str, *, as_: Account) -> dict[str, Any]:
    """The payload of regenerateMachineGroupPassword."""
    return api.mutate(REGENERATE, {"g": group_id}, as_=as_)


def find_group(api: Api, group_id: str, *, as_: Account) -> dict[str, Any] | None:
    """`machineGroup(id)` as the viewer sees it (None: not visible)."""
    found: dict[str, Any] | None = api.data(GROUP, {"g": group_id}, as_=as_)["machineGroup"]
    return found


def group(api: Api, group_id: str, *, as_: Account) -> dict[str, Any]:
    """`machineGroup(id)` of a group the viewer must see."""
    found = find_group(api, group_id, as_=as_)
    assert found is not None, f"group {group_id} is not visible"
    return found


def find_machine(api: Api, machine_id: str, *, as_: Account) -> dict[str, Any] | None:
    """`machine(id)` as the viewer sees it (None: not visible)."""
    found: dict[str, Any] | None = api.data(MACHINE, {"m": machine_id}, as_=as_)["machine"]
    return found


def group_of(api: Api, machine_id: str, *, as_: Account) -> str | None:
    """The id of the group a machine the viewer must see is in (None: standalone)."""
    found = find_machine(api, machine_id, as_=as_)
    assert found is not None, f"machine {machine_id} is not visible"
    return found["group"]["id"] if found["group"] else None


def group_names(api: Api, *, as_: Account, environment_id: str | None = None) -> list[str]:
    """Names of every group `machineGroups` lists to the viewer (one page of 100)."""
    data = api.data(
        "query($e: ID) { machineGroups(environmentId: $e, first: 100) {"
        " edges { node { name } } } }",
        {"e": environment_id},
        as_=as_,
    )
    return [edge["node"]["name"] for edge in data["machineGroups"]["edges"]]


def machine_ids(api: Api, *, as_: Account) -> set[str]:
    """Ids of every machine `machines` lists to the viewer (one page of 100)."""
    data = api.data("{ machines(first: 100) { edges { node { id } } } }", as_=as_)
    return {edge["node"]["id"] for edge in data["machines"]["edges"]}


def machines_in_group(server: LiveServer, group_id: str) -> int:
    """How many machines the database holds in a group, read straight from SQLite."""

    async def count() -> int:
        async with server.state.db.read() as session:
            found = await session.scalar(
                select(func.count()).where(col(Machine.group_id) == group_id)
            )
            return int(found or 0)

    return server.run(count())


def insert_group_and_machine(
    server: LiveServer, environment_id: str, owner_id: str
) -> tuple[str, str]:
    """A group and a standalone machine written straight to the database: (group, machine).

    For environments where the API refuses to create them (restricted regions).
    """

    async def insert() -> tuple[str, str]:
        async with server.state.db.write() as session:
            now = server.clock.now()
            group_row = MachineGroup(
                environment_id=environment_id,
                name="gov",
                name_key="gov",
                owner_id=owner_id,
                created_at=now,
            )
            machine_row = Machine(
                environment_id=environment_id,
                name="gov-vm",
                name_key="gov-vm",
                owner_id=owner_id,
                key_hash=f"unused-{environment_id}",
                created_at=now,
            )
            session.add_all([group_row, machine_row])
            return group_row.id, machine_row.id

    return server.run(insert())
