"""The one permission path: every rule asks here whether the caller may act on a record."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import BindParameter, bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from app.authz.decisions import Verdict, decide, role_permits
from app.db.models import Environment, Grant, Machine, MachineGroup
from app.domain.caller import Caller, Viewer
from app.domain.enums import AccessLevel, Action, ErrorCode, RecordKind
from app.domain.errors import DomainError, not_found, permission_denied
from app.domain.group_facts import GroupRecord
from app.domain.validation import region_allows_machines

Record = Machine | MachineGroup


def level_from(viewer: Viewer, owner_id: str, granted: str | None) -> AccessLevel | None:
    """The viewer's level given a record's owner and the viewer's grant on it, if any."""
    if owner_id == viewer.id:
        return AccessLevel.OWNER
    return AccessLevel(granted) if granted else None


def kind_of(record: Record) -> RecordKind:
    """`machine` or `machine_group`."""
    return RecordKind.MACHINE if isinstance(record, Machine) else RecordKind.MACHINE_GROUP


def _access_statement() -> Any:
    """The owner of a machine's group, the viewer's grant on the governing record, and the
    region of the record's environment: what a permission check reads, in one statement.

    Built once with bound parameters, so SQLAlchemy compiles it once.
    """
    governing_id: BindParameter[str] = bindparam("governing_id")
    return select(
        select(col(MachineGroup.owner_id))
        .where(col(MachineGroup.id) == governing_id)
        .scalar_subquery()
        .label("group_owner"),
        select(col(Grant.level))
        .where(
            col(Grant.record_kind) == bindparam("kind"),
            col(Grant.record_id) == governing_id,
            col(Grant.user_id) == bindparam("user_id"),
        )
        .scalar_subquery()
        .label("granted"),
        select(col(Environment.region))
        .where(col(Environment.id) == bindparam("environment_id"))
        .scalar_subquery()
        .label("region"),
    )


_ACCESS = _access_statement()


@dataclass(frozen=True)
class Access:
    """The viewer's level on a record, and the region of the record's environment."""

    level: AccessLevel | None
    region: str | None


async def access_to(session: AsyncSession, viewer: Viewer, record: Record) -> Access:
    """The viewer's access to a record: on a machine in a group, the group's grants and
    owner decide (the foreign key keeps a machine's group in existence)."""
    group_id = record.group_id if isinstance(record, Machine) else None
    in_group = group_id is not None
    facts = (
        await session.execute(
            _ACCESS,
            {
                "governing_id": group_id or record.id,
                "kind": (RecordKind.MACHINE_GROUP if in_group else kind_of(record)).value,
                "user_id": viewer.id,
                "environment_id": record.environment_id,
            },
        )
    ).one()
    owner_id = facts.group_owner if in_group else record.owner_id
    return Access(level_from(viewer, owner_id, facts.granted), facts.region)


async def level_on(session: AsyncSession, viewer: Viewer, record: Record) -> AccessLevel | None:
    """The viewer's access level on a record (a machine in a group: on the group)."""
    return (await access_to(session, viewer, record)).level


def _check_region(region: str | None) -> None:
    """Refuse machine features in restricted regions; None: the environment is missing."""
    if region is None:
        raise not_found("environment", "environmentId")
    if not region_allows_machines(region):
        raise DomainError(
            ErrorCode.UNAVAILABLE_IN_REGION,
            f"machines and machine groups are not available in region {region!r}",
        )


async def require_region(session: AsyncSession, environment_id: str) -> Environment:
    """The environment, refusing machine features in restricted regions."""
    environment = await session.get(Environment, environment_id)
    _check_region(environment.region if environment is not None else None)
    assert environment is not None  # refused above
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
    access = await access_to(session, caller.viewer, record)
    level = access.level
    roles = caller.viewer.roles_in(record.environment_id)
    verdict = decide(caller.services.policy.table, roles, level, kind_of(record), action)
    if verdict is Verdict.NOT_FOUND:
        raise not_found(what, field)
    if action is not Action.VIEW:
        _check_region(access.region)
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
    viewer: Viewer, group: GroupRecord, granted: AccessLevel | None
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
