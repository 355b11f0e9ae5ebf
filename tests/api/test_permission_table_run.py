"""The run action in the permission table: every security role x access level, from the spec.

Written out from ../shared/spec/README.md, not computed from the policy file:
- "run a desktop flow" is a privilege of DESKTOP_FLOWS_MACHINE_OWNER, _USER and
  _USER_CAN_SHARE, and so of ENVIRONMENT_MAKER (who holds every privilege of
  DESKTOP_FLOWS_MACHINE_OWNER); SYSTEM_ADMINISTRATOR may do everything without a grant;
- on the record, OWNER, CO_OWNER and USER all grant it;
- starting a run through a connection needs run access on its target and the run
  privilege; the connection (made by the administrator here) is visible to whoever sees its
  target, so without any grant the actor does not see it: NOT_FOUND.

Legend: A allowed, D PERMISSION_DENIED, N NOT_FOUND. Columns: the actor's access level on
the connection's target: none, USER, CO_OWNER, OWNER.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.api.conftest import Account, Api, MakeUser
from tests.api.queue_helpers import RUN, add_machine, connection_id, start_run
from tests.api.test_permission_table import LEVELS, OUTCOME, Scenario, outcome

#                             none USER CO_OWNER OWNER
EXPECTED_RUN: dict[str | None, str] = {
    None: "N D D D",
    "SYSTEM_ADMINISTRATOR": "A A A A",
    "ENVIRONMENT_MAKER": "N A A A",
    "DESKTOP_FLOWS_MACHINE_OWNER": "N A A A",
    "DESKTOP_FLOWS_MACHINE_USER": "N A A A",
    "DESKTOP_FLOWS_MACHINE_USER_CAN_SHARE": "N A A A",
}


def expected_run(role: str | None, level: str | None) -> str:
    """The spec's outcome for one cell."""
    return OUTCOME[EXPECTED_RUN[role].split()[LEVELS.index(level)]]


def start_through_target(
    s: Scenario, actor: Account, role: str | None, level: str | None, kind: str
) -> tuple[str, dict[str, Any]]:
    """startRun as the actor through an admin's connection to a fresh target.

    The target is a group with one machine (a group needs one to run flows), or a
    standalone machine, on which the actor holds `level`. Returns (outcome, payload).
    """
    target = s.record_for(kind, actor, role, level)
    if kind == "group":
        machine_id = s.machine(s.admin)
        assert add_machine(s.api, machine_id, target, as_=s.admin)["errors"] == []
        connection = connection_id(s.api, as_=s.admin, group_id=target)
    else:
        connection = connection_id(s.api, as_=s.admin, machine_id=target)
    payload = start_run(s.api, connection, as_=actor, flow="Payroll")
    return outcome(payload), payload


@pytest.mark.parametrize("kind", ["group", "machine"])
@pytest.mark.parametrize("role", list(EXPECTED_RUN))
def test_start_run_matches_the_spec_for_every_role_and_level(
    api: Api, admin: Account, make_user: MakeUser, role: str | None, kind: str
) -> None:
    scenario = Scenario(api, admin, make_user)
    mismatches = []
    for level in LEVELS:
        # A fresh actor per level, premium so that a lent role can register a machine.
        actor = make_user(roles=[role] if role else [], premium=True)
        got, payload = start_through_target(scenario, actor, role, level, kind)
        want = expected_run(role, level)
        if got != want:
            mismatches.append(f"{kind} role={role} level={level}: {got}, want {want}")
        elif got == "ALLOWED":
            queued = api.data(RUN, {"id": payload["run"]["id"]}, as_=admin)["run"]
            assert queued["status"] == "QUEUED"
            assert queued["startedBy"] == {"name": actor.name}
        else:
            assert payload["run"] is None
    assert mismatches == []


def test_a_refused_start_queues_nothing(api: Api, admin: Account, make_user: MakeUser) -> None:
    scenario = Scenario(api, admin, make_user)
    actor = make_user()  # no security role: no run privilege
    got, _ = start_through_target(scenario, actor, None, "USER", "group")
    assert got == "PERMISSION_DENIED"
    total = api.data("{ runs { totalCount } }", as_=admin)["runs"]["totalCount"]
    assert total == 0
