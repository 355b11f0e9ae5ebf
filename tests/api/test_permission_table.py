"""Every security role x access level x action, against the spec's two tables.

The expected outcomes below are written out from ../shared/spec/README.md ("Authorization:
two tables, both in force"), not computed from the policy file:
- a record the viewer holds no grant on is NOT_FOUND, unless they are SYSTEM_ADMINISTRATOR
  (who may do everything in its environment);
- seeing needs any grant; security roles do not restrict seeing;
- every other action needs the privilege from a role AND the level on the record;
  ENVIRONMENT_MAKER holds DESKTOP_FLOWS_MACHINE_OWNER's privileges by default;
- a USER-level holder may share only with DESKTOP_FLOWS_MACHINE_USER_CAN_SHARE, and only
  USER level.

Legend: A allowed, D PERMISSION_DENIED, N NOT_FOUND. Columns: view, share at USER, share at
CO_OWNER, add machine, remove machine, edit, delete.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.api.conftest import Account, Api, MakeUser

ACTIONS = (
    "view",
    "share_user",
    "share_co_owner",
    "add_machine",
    "remove_machine",
    "edit",
    "delete",
)
LEVELS = (None, "USER", "CO_OWNER", "OWNER")
PASSWORD = "a long group secret"

#                       view share_user share_co add remove edit delete
EXPECTED: dict[str | None, dict[str | None, str]] = {
    None: {
        None: "N N N N N N N",
        "USER": "A D D D D D D",
        "CO_OWNER": "A D D D D D D",
        "OWNER": "A D D D D D D",
    },
    "SYSTEM_ADMINISTRATOR": {
        None: "A A A A A A A",
        "USER": "A A A A A A A",
        "CO_OWNER": "A A A A A A A",
        "OWNER": "A A A A A A A",
    },
    "ENVIRONMENT_MAKER": {
        None: "N N N N N N N",
        "USER": "A D D D D D D",
        "CO_OWNER": "A A A A A A A",
        "OWNER": "A A A A A A A",
    },
    "DESKTOP_FLOWS_MACHINE_OWNER": {
        None: "N N N N N N N",
        "USER": "A D D D D D D",
        "CO_OWNER": "A A A A A A A",
        "OWNER": "A A A A A A A",
    },
    "DESKTOP_FLOWS_MACHINE_USER": {
        None: "N N N N N N N",
        "USER": "A D D D D D D",
        "CO_OWNER": "A D D D D D D",
        "OWNER": "A D D D D D D",
    },
    "DESKTOP_FLOWS_MACHINE_USER_CAN_SHARE": {
        None: "N N N N N N N",
        "USER": "A A D D D D D",
        "CO_OWNER": "A A A D D D D",
        "OWNER": "A A A D D D D",
    },
}

OUTCOME = {"A": "ALLOWED", "D": "PERMISSION_DENIED", "N": "NOT_FOUND"}


def expected(role: str | None, level: str | None, action: str) -> str:
    """The spec's outcome for one cell."""
    return OUTCOME[EXPECTED[role][level].split()[ACTIONS.index(action)]]


def outcome(payload: dict[str, Any], *, allowed_code: str | None = None) -> str:
    """ALLOWED, or the first error code (an allowed action may end in a later rule's code)."""
    codes = [error["code"] for error in payload["errors"]]
    if not codes or codes == [allowed_code]:
        return "ALLOWED"
    return str(codes[0])


class Scenario:
    """Builds records through the API and performs each action as the actor."""

    def __init__(self, api: Api, admin: Account, make_user: MakeUser) -> None:
        self.api, self.admin, self.make_user = api, admin, make_user
        self.counter = 0

    def name(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix} {self.counter}"

    def with_maker_role(self, actor: Account, role: str | None, create: Callable[[], str]) -> str:
        """Create a record owned by the actor, lending ENVIRONMENT_MAKER for the moment."""
        lend = role not in ("ENVIRONMENT_MAKER", "SYSTEM_ADMINISTRATOR")
        if lend:
            self.set_role(actor, "ENVIRONMENT_MAKER", assign=True)
        record_id = create()
        if lend:
            self.set_role(actor, "ENVIRONMENT_MAKER", assign=False)
        return record_id

    def set_role(self, user: Account, role: str, *, assign: bool) -> None:
        field = "assignSecurityRole" if assign else "removeSecurityRole"
        self.api.ok(
            f"mutation($id: ID!, $role: SecurityRole!) {{ {field}(userId: $id, role: $role)"
            " { errors { code } } }",
            {"id": user.id, "role": role},
            as_=self.admin,
        )

    def group(self, owner: Account) -> str:
        payload = self.api.ok(
            "mutation($name: String!) { createMachineGroup(input: {name: $name}) {"
            " machineGroup { id } errors { code } } }",
            {"name": self.name("group")},
            as_=owner,
        )
        return str(payload["machineGroup"]["id"])

    def machine(self, owner: Account) -> str:
        payload = self.api.ok(
            "mutation($name: String!) { registerMachine(input: {name: $name}) {"
            " machine { id } errors { code } } }",
            {"name": self.name("VM")},
            as_=owner,
        )
        return str(payload["machine"]["id"])

    def share(self, kind: str, record_id: str, user: Account, level: str, as_: Account) -> Any:
        field, arg = (
            ("shareMachineGroup", "groupId") if kind == "group" else ("shareMachine", "machineId")
        )
        return self.api.mutate(
            f"mutation($r: ID!, $u: ID!, $l: ShareLevel!) {{ {field}(input: {{{arg}: $r,"
            " userId: $u, access: $l}) { errors { code } } }",
            {"r": record_id, "u": user.id, "l": level},
            as_=as_,
        )

    def add(self, machine_id: str, group_id: str, as_: Account) -> Any:
        return self.api.mutate(
            "mutation($m: ID!, $g: ID!, $p: String!) { addMachineToGroup(input:"
            " {machineId: $m, groupId: $g, password: $p}) { errors { code } } }",
            {"m": machine_id, "g": group_id, "p": PASSWORD},
            as_=as_,
        )

    def remove(self, machine_id: str, as_: Account) -> Any:
        return self.api.mutate(
            "mutation($m: ID!) { removeMachineFromGroup(machineId: $m) { errors { code } } }",
            {"m": machine_id},
            as_=as_,
        )

    def record_for(self, kind: str, actor: Account, role: str | None, level: str | None) -> str:
        """A record on which the actor holds `level` (None: no grant at all)."""
        make = self.group if kind == "group" else self.machine
        if level == "OWNER":
            return self.with_maker_role(actor, role, lambda: make(actor))
        record_id = make(self.admin)
        if level is not None:
            assert self.share(kind, record_id, actor, level, self.admin)["errors"] == []
        return record_id


def group_action(
    s: Scenario, actor: Account, role: str | None, level: str | None, action: str
) -> str:
    """Perform one action on a fresh group where the actor holds `level`."""
    group_id = s.record_for("group", actor, role, level)
    api = s.api
    if action == "view":
        seen = api.data(
            "query($id: ID!) { machineGroup(id: $id) { id } }", {"id": group_id}, as_=actor
        )
        return "ALLOWED" if seen["machineGroup"] else "NOT_FOUND"
    if action in ("share_user", "share_co_owner"):
        level_asked = "USER" if action == "share_user" else "CO_OWNER"
        return outcome(s.share("group", group_id, s.make_user(), level_asked, actor))
    if action == "add_machine":
        machine_id = s.machine(s.admin)
        assert s.share("machine", machine_id, actor, "CO_OWNER", s.admin)["errors"] == []
        return outcome(s.add(machine_id, group_id, actor))
    if action == "remove_machine":
        machine_id = s.machine(s.admin)
        assert s.add(machine_id, group_id, s.admin)["errors"] == []
        return outcome(s.remove(machine_id, actor))
    if action == "edit":
        return outcome(
            api.mutate(
                "mutation($id: ID!, $n: String!) { updateMachineGroup(input: {id: $id, name: $n})"
                " { errors { code } } }",
                {"id": group_id, "n": s.name("renamed")},
                as_=actor,
            )
        )
    assert action == "delete"
    return outcome(
        api.mutate(
            "mutation($id: ID!) { deleteMachineGroup(id: $id) { errors { code } } }",
            {"id": group_id},
            as_=actor,
        )
    )


def machine_action(
    s: Scenario, actor: Account, role: str | None, level: str | None, action: str
) -> str:
    """Perform one action on a fresh standalone machine where the actor holds `level`."""
    machine_id = s.record_for("machine", actor, role, level)
    api = s.api
    if action == "view":
        seen = api.data(
            "query($id: ID!) { machine(id: $id) { id } }", {"id": machine_id}, as_=actor
        )
        return "ALLOWED" if seen["machine"] else "NOT_FOUND"
    if action in ("share_user", "share_co_owner"):
        level_asked = "USER" if action == "share_user" else "CO_OWNER"
        return outcome(s.share("machine", machine_id, s.make_user(), level_asked, actor))
    if action == "add_machine":
        group_id = s.group(s.admin)
        assert s.share("group", group_id, actor, "CO_OWNER", s.admin)["errors"] == []
        return outcome(s.add(machine_id, group_id, actor))
    if action == "remove_machine":
        # A standalone machine: when the remove action is allowed, the rule after it answers
        # CONFLICT (it is in no group); a refusal must come first (the spec's error order).
        return outcome(s.remove(machine_id, actor), allowed_code="CONFLICT")
    if action == "edit":
        return outcome(
            api.mutate(
                "mutation($id: ID!, $n: String!) { updateMachine(input: {id: $id, name: $n})"
                " { errors { code } } }",
                {"id": machine_id, "n": s.name("renamed")},
                as_=actor,
            )
        )
    assert action == "delete"
    return outcome(
        api.mutate(
            "mutation($id: ID!) { deleteMachine(id: $id) { errors { code } } }",
            {"id": machine_id},
            as_=actor,
        )
    )


@pytest.mark.parametrize("kind", ["group", "machine"])
@pytest.mark.parametrize("role", list(EXPECTED))
def test_role_x_level_x_action_matches_the_spec(
    api: Api, admin: Account, make_user: MakeUser, role: str | None, kind: str
) -> None:
    scenario = Scenario(api, admin, make_user)
    act = group_action if kind == "group" else machine_action
    mismatches = []
    for level in LEVELS:
        # A fresh actor per level, premium so that lent roles can register machines.
        actor = make_user(roles=[role] if role else [], premium=True)
        for action in ACTIONS:
            got = act(scenario, actor, role, level, action)
            want = expected(role, level, action)
            if got != want:
                mismatches.append(f"{kind} role={role} level={level} {action}: {got}, want {want}")
    assert mismatches == []
