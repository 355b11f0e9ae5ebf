"""The two tables of the spec, both in force: security roles and access levels.

The shipped `policies/` folder is compiled once (reading its two files is this module's
only I/O); hand-built decision tables show that each privilege is one line.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from app.authz.decisions import Verdict, decide, role_permits
from app.authz.enforcer import DecisionTable, compile_policy, policy_checksum
from app.domain.enums import POLICY_ACTIONS, AccessLevel, Action, RecordKind, SecurityRole
from tests.conftest import POLICIES

NOW = datetime(2026, 11, 27, tzinfo=UTC)
MACHINE, GROUP = RecordKind.MACHINE, RecordKind.MACHINE_GROUP
ADMIN = SecurityRole.SYSTEM_ADMINISTRATOR
MAKER = SecurityRole.ENVIRONMENT_MAKER
OWNER_ROLE = SecurityRole.DESKTOP_FLOWS_MACHINE_OWNER
USER_ROLE = SecurityRole.DESKTOP_FLOWS_MACHINE_USER
CAN_SHARE = SecurityRole.DESKTOP_FLOWS_MACHINE_USER_CAN_SHARE
OWNER, CO_OWNER, USER = AccessLevel.OWNER, AccessLevel.CO_OWNER, AccessLevel.USER
RECORD_ACTIONS = list(POLICY_ACTIONS)  # every action a policy line can name

# The spec's role table: register and create are the privileges of making records.
_ALL_ROLE = {
    MACHINE: {"register", "run", "share", "add_machine", "remove_machine", "edit", "delete"},
    GROUP: {"create", "run", "share", "add_machine", "remove_machine", "edit", "delete"},
}
SPEC_ROLES: dict[SecurityRole, dict[RecordKind, set[str]]] = {
    MAKER: _ALL_ROLE,
    OWNER_ROLE: _ALL_ROLE,
    USER_ROLE: {MACHINE: {"run"}, GROUP: {"run"}},
    CAN_SHARE: {MACHINE: {"run", "share"}, GROUP: {"run", "share"}},
}
# The spec's level table (USER sharing is footnote 1: a rule of the service).
_ALL_LEVEL = {"run", "share", "add_machine", "remove_machine", "edit", "delete"}
SPEC_LEVELS: dict[AccessLevel, set[str]] = {
    OWNER: _ALL_LEVEL,
    CO_OWNER: _ALL_LEVEL,
    USER: {"run"},
}


@pytest.fixture(scope="module")
def table() -> DecisionTable:
    return compile_policy(POLICIES, NOW)


def _without(table: DecisionTable, *lines: tuple[str, str, str]) -> DecisionTable:
    for line in lines:
        assert line in table.allowed, line
    return DecisionTable(allowed=table.allowed - set(lines), checksum="x", loaded_at=NOW)


# --- the compiled policy ----------------------------------------------------


def test_the_shipped_policy_is_exactly_the_specs_two_tables(table: DecisionTable) -> None:
    expected = {
        (role.policy_name, kind.value, action)
        for role, kinds in SPEC_ROLES.items()
        for kind, actions in kinds.items()
        for action in actions
    } | {
        (level.policy_name, kind.value, action)
        for level, actions in SPEC_LEVELS.items()
        for kind in RecordKind
        for action in actions
    }
    assert table.allowed == expected
    assert table.checksum == policy_checksum(POLICIES)
    assert table.loaded_at == NOW


def test_system_administrator_rights_are_not_in_the_policy(table: DecisionTable) -> None:
    assert not any(subject == "system-administrator" for subject, _, _ in table.allowed)


# --- decide -----------------------------------------------------------------


@pytest.mark.parametrize("kind", list(RecordKind))
@pytest.mark.parametrize("action", list(Action))
def test_a_system_administrator_may_do_anything_without_a_grant(
    table: DecisionTable, kind: RecordKind, action: Action
) -> None:
    assert decide(table, {ADMIN}, None, kind, action) is Verdict.ALLOWED
    empty = DecisionTable(allowed=frozenset(), checksum="x", loaded_at=NOW)
    assert decide(empty, {ADMIN}, None, kind, action) is Verdict.ALLOWED


@pytest.mark.parametrize("kind", list(RecordKind))
@pytest.mark.parametrize("action", list(Action))
def test_without_a_grant_a_record_is_not_found_whatever_the_roles(
    table: DecisionTable, kind: RecordKind, action: Action
) -> None:
    for roles in (set(), {MAKER}, {OWNER_ROLE, USER_ROLE, CAN_SHARE}):
        assert decide(table, roles, None, kind, action) is Verdict.NOT_FOUND


@pytest.mark.parametrize("kind", list(RecordKind))
@pytest.mark.parametrize("level", list(AccessLevel))
def test_any_grant_lets_its_holder_see_the_record_whatever_the_roles(
    table: DecisionTable, kind: RecordKind, level: AccessLevel
) -> None:
    assert decide(table, set(), level, kind, Action.VIEW) is Verdict.ALLOWED
    assert decide(table, {USER_ROLE}, level, kind, Action.VIEW) is Verdict.ALLOWED


@pytest.mark.parametrize("kind", list(RecordKind))
@pytest.mark.parametrize("level", list(AccessLevel))
@pytest.mark.parametrize("role", list(SPEC_ROLES))
@pytest.mark.parametrize("action", RECORD_ACTIONS)
def test_an_action_needs_both_the_role_and_the_level(
    table: DecisionTable, kind: RecordKind, level: AccessLevel, role: SecurityRole, action: Action
) -> None:
    by_role = action.value in SPEC_ROLES[role][kind]
    by_level = action.value in SPEC_LEVELS[level]
    footnote = action is Action.SHARE and level is USER and role is CAN_SHARE
    expected = Verdict.ALLOWED if by_role and (by_level or footnote) else Verdict.DENIED
    assert decide(table, {role}, level, kind, action) is expected


@pytest.mark.parametrize("kind", list(RecordKind))
def test_a_user_level_holder_with_the_can_share_role_may_share(
    table: DecisionTable, kind: RecordKind
) -> None:
    assert decide(table, {CAN_SHARE}, USER, kind, Action.SHARE) is Verdict.ALLOWED
    # With other roles beside it too.
    assert decide(table, {CAN_SHARE, USER_ROLE}, USER, kind, Action.SHARE) is Verdict.ALLOWED
    assert decide(table, {CAN_SHARE, OWNER_ROLE}, USER, kind, Action.SHARE) is Verdict.ALLOWED


@pytest.mark.parametrize("kind", list(RecordKind))
@pytest.mark.parametrize("role", [OWNER_ROLE, MAKER, USER_ROLE])
def test_a_user_level_holder_without_the_can_share_role_may_not_share(
    table: DecisionTable, kind: RecordKind, role: SecurityRole
) -> None:
    assert decide(table, {role}, USER, kind, Action.SHARE) is Verdict.DENIED


@pytest.mark.parametrize("kind", list(RecordKind))
@pytest.mark.parametrize("level", list(AccessLevel))
def test_the_plain_machine_user_role_may_only_run(
    table: DecisionTable, kind: RecordKind, level: AccessLevel
) -> None:
    assert decide(table, {USER_ROLE}, level, kind, Action.RUN) is Verdict.ALLOWED
    for action in (Action.SHARE, Action.ADD_MACHINE, Action.EDIT, Action.DELETE):
        assert decide(table, {USER_ROLE}, level, kind, action) is Verdict.DENIED


def test_without_roles_a_grant_only_shows_the_record(table: DecisionTable) -> None:
    for action in RECORD_ACTIONS:
        assert decide(table, set(), OWNER, GROUP, action) is Verdict.DENIED


# --- role_permits (register, create: no record yet) --------------------------


def test_who_may_register_machines_and_create_groups(table: DecisionTable) -> None:
    for roles, may in [
        ({ADMIN}, True),
        ({MAKER}, True),
        ({OWNER_ROLE}, True),
        ({USER_ROLE}, False),
        ({CAN_SHARE}, False),
        (set(), False),
        ({USER_ROLE, MAKER}, True),
    ]:
        assert role_permits(table, roles, MACHINE, Action.REGISTER) is may, roles
        assert role_permits(table, roles, GROUP, Action.CREATE) is may, roles
    # Registering is a privilege on machines, creating one on groups.
    assert role_permits(table, {MAKER}, GROUP, Action.REGISTER) is False
    assert role_permits(table, {MAKER}, MACHINE, Action.CREATE) is False


# --- one line, one privilege --------------------------------------------------


def test_removing_a_roles_line_removes_that_privilege_only(table: DecisionTable) -> None:
    edited = _without(table, ("environment-maker", "machine", "register"))
    assert role_permits(edited, {MAKER}, MACHINE, Action.REGISTER) is False
    assert role_permits(edited, {OWNER_ROLE}, MACHINE, Action.REGISTER) is True
    assert role_permits(edited, {MAKER}, GROUP, Action.CREATE) is True
    assert decide(edited, {MAKER}, OWNER, MACHINE, Action.EDIT) is Verdict.ALLOWED


def test_removing_a_levels_line_removes_that_privilege_from_every_holder(
    table: DecisionTable,
) -> None:
    edited = _without(table, ("co-owner", "machine_group", "edit"))
    assert decide(edited, {OWNER_ROLE}, CO_OWNER, GROUP, Action.EDIT) is Verdict.DENIED
    assert decide(edited, {OWNER_ROLE}, OWNER, GROUP, Action.EDIT) is Verdict.ALLOWED
    assert decide(edited, {OWNER_ROLE}, CO_OWNER, MACHINE, Action.EDIT) is Verdict.ALLOWED
    assert decide(edited, {OWNER_ROLE}, CO_OWNER, GROUP, Action.DELETE) is Verdict.ALLOWED


def test_removing_the_can_share_line_takes_sharing_from_user_level_holders(
    table: DecisionTable,
) -> None:
    edited = _without(table, ("desktop-flows-machine-user-can-share", "machine_group", "share"))
    assert decide(edited, {CAN_SHARE}, USER, GROUP, Action.SHARE) is Verdict.DENIED
    assert decide(edited, {CAN_SHARE}, CO_OWNER, GROUP, Action.SHARE) is Verdict.DENIED
    assert decide(edited, {CAN_SHARE}, USER, MACHINE, Action.SHARE) is Verdict.ALLOWED
    assert decide(edited, {CAN_SHARE}, USER, GROUP, Action.RUN) is Verdict.ALLOWED


def test_removing_a_line_never_touches_the_administrators(table: DecisionTable) -> None:
    empty = DecisionTable(allowed=frozenset(), checksum="x", loaded_at=NOW)
    assert role_permits(empty, {ADMIN}, MACHINE, Action.REGISTER) is True
    assert role_permits(empty, {MAKER}, MACHINE, Action.REGISTER) is False
    assert decide(empty, {MAKER}, OWNER, GROUP, Action.RUN) is Verdict.DENIED
