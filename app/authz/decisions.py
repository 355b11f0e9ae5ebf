"""Combine the two tables of the spec: security roles and access levels."""

from __future__ import annotations

from collections.abc import Collection
from enum import Enum

from app.authz.enforcer import DecisionTable
from app.domain.enums import AccessLevel, Action, RecordKind, SecurityRole


class Verdict(Enum):
    ALLOWED = "ALLOWED"
    DENIED = "DENIED"
    NOT_FOUND = "NOT_FOUND"


def role_permits(
    table: DecisionTable, roles: Collection[SecurityRole], obj: RecordKind, action: Action
) -> bool:
    """Whether any of the roles grants the privilege (SYSTEM_ADMINISTRATOR grants all)."""
    if SecurityRole.SYSTEM_ADMINISTRATOR in roles:
        return True
    return any(table.permits(role.policy_name, obj, action.value) for role in roles)


def decide(
    table: DecisionTable,
    roles: Collection[SecurityRole],
    level: AccessLevel | None,
    obj: RecordKind,
    action: Action,
) -> Verdict:
    """The verdict for a viewer holding `roles` in the record's environment and `level` on it.

    No grant means the record is invisible, unless the viewer administers the environment.
    Seeing needs any grant; every other action needs both the role and the level. A
    USER-level holder with the can-share role may share too (footnote 1 of the spec);
    that they grant only USER and change nothing is the sharing rules' part.
    """
    if SecurityRole.SYSTEM_ADMINISTRATOR in roles:
        return Verdict.ALLOWED
    if level is None:
        return Verdict.NOT_FOUND
    if action is Action.VIEW:
        return Verdict.ALLOWED
    if not role_permits(table, roles, obj, action):
        return Verdict.DENIED
    if table.permits(level.policy_name, obj, action.value):
        return Verdict.ALLOWED
    if (
        action is Action.SHARE
        and level is AccessLevel.USER
        and SecurityRole.DESKTOP_FLOWS_MACHINE_USER_CAN_SHARE in roles
        and table.permits(
            SecurityRole.DESKTOP_FLOWS_MACHINE_USER_CAN_SHARE.policy_name, obj, "share"
        )
    ):
        return Verdict.ALLOWED
    return Verdict.DENIED
