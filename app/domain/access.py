"""The one permission path: every rule asks here whether the caller may act on a record."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from app.authz.decisions import Verdict, decide, role_permits
from app.db.models import Environment, Grant, Machine, MachineGroup
from app.domain.caller import Caller, Viewer
from app.domain.enums import AccessLevel, Action, ErrorCode, RecordKind
from app.domain.errors import DomainError, not_found, permission_denied
from app.domain.validation import region_allows_machines

Record = Machine | MachineGroup


def level_from(viewer: Viewer, owner_id: str, granted: str | None) -> AccessLevel | None:
    """The viewer's level given a record's owner and the viewer's grant on it, if any."""
    if owner_id == viewer.id:
        return AccessLevel.OWNER
    return AccessLevel(granted) if granted else None


async def grant_level(
    session: AsyncSession, kind: RecordKind, record_id: str, user_id: str
) -> str | None:
    """The level a user's own grant on a record names, if they hold one."""
    return await session.scalar(
        select(col(Grant.level)).where(
            col(Grant.record_kind) == kind.value,
            col(Grant.record_id) == record_id,
            col(Grant.user_id) == user_id,
        )
    )


async def governing_record(session: AsyncSession, record: Record) -> MachineGroup | Machine:
    """The record whose grants apply: a machine's group while it is in one."""
    if isinstance(record, Machine) and record.group_id:
        group = await session.get(MachineGroup, record.group_id)
        if group is not None:
            return group
    return record


def kind_of(record: Record) -> RecordKind:
    """`machine` or `machine_group`."""
    return RecordKind.MACHINE if isinstance(record, Machine) else RecordKind.MACHINE_GROUP


async def level_on(session: AsyncSession, viewer: Viewer, record: Record) -> AccessLevel | None:
    """The viewer's access level on a record (a machine in a group: on the group)."""
    governing = await governing_record(session, record)
    granted = await grant_level(session, kind_of(governing), governing.id, viewer.id)
    return level_from(viewer, governing.owner_id, granted)


async def require_region(session: AsyncSession, environment_id: str) -> Environment:
    """The environment, refusing machine features in restricted regions."""
    environment = await session.get(Environment, environment_id)
    if environment is None:
        raise not_found("environment", "environmentId")
    if not region_allows_machines(environment.region):
        raise DomainError(
            ErrorCode.UNAVAILABLE_IN_REGION,
            f"machines and machine groups are not available in region {environment.region!r}",
        )
    return environment


async def authorize(
    session: AsyncSession,
    caller: Caller,
    record: Record,
    action: Action,
    *,
    what: str,
    field: str | None = None,
    machine_level_change: bool = False,
) -> AccessLevel | None:
    """Check one action on one record, raising the first error the spec's order names.

    Returns the caller's level on the record (None: an administrator without a grant).
    `machine_level_change` marks machine-level sharing, refused while the machine is in
    a group (its access is the group's).
    """
    level = await level_on(session, caller.viewer, record)
    roles = caller.viewer.roles_in(record.environment_id)
    verdict = decide(caller.services.policy.table, roles, level, kind_of(record), action)
    if verdict is Verdict.NOT_FOUND:
        raise not_found(what, field)
    if action is not Action.VIEW:
        await require_region(session, record.environment_id)
    if machine_level_change and isinstance(record, Machine) and record.group_id:
        raise DomainError(
            ErrorCode.MANAGED_BY_GROUP,
            "this machine is in a group: manage access on the group instead",
        )
    if verdict is Verdict.DENIED:
        raise permission_denied(f"you may not {action.value.replace('_', ' ')} this {what}")
    return level


def require_privilege(
    caller: Caller, environment_id: str, kind: RecordKind, action: Action, what: str
) -> None:
    """Check a privilege that concerns no existing record (register, create)."""
    roles = caller.viewer.roles_in(environment_id)
    if not role_permits(caller.services.policy.table, roles, kind, action):
        raise permission_denied(f"your security roles do not allow you to {what}")


def may_share(
    caller: Caller, environment_id: str, level: AccessLevel | None, kind: RecordKind
) -> bool:
    """Whether the caller may share a record they hold `level` on (by both tables)."""
    roles = caller.viewer.roles_in(environment_id)
    return decide(caller.services.policy.table, roles, level, kind, Action.SHARE) is Verdict.ALLOWED


def group_level_for(
    viewer: Viewer, group: MachineGroup, granted: AccessLevel | None
) -> AccessLevel | None:
    """The viewer's level on a group from its owner and the viewer's grant."""
    return AccessLevel.OWNER if group.owner_id == viewer.id else granted


async def co_owns_target(
    session: AsyncSession, caller: Caller, group_id: str | None, machine_id: str | None
) -> bool:
    """Whether the caller administers, or holds co-owner level or more on, a run's or a
    connection's target (a group, else a machine; False when there is none)."""
    target: Record | None = None
    if group_id:
        target = await session.get(MachineGroup, group_id)
    elif machine_id:
        target = await session.get(Machine, machine_id)
    if target is None:
        return False
    if caller.viewer.administers(target.environment_id):
        return True
    level = await level_on(session, caller.viewer, target)
    return level is not None and level.rank >= AccessLevel.CO_OWNER.rank
