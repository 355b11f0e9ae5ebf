"""Access grants on machines and groups: share, change, revoke."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from app.db.models import Grant, Machine, User
from app.domain.access import (
    Record,
    authorize,
    check_grant_change,
    check_revoke,
    kind_of,
    sharing_level,
)
from app.domain.audit import AuditKind, audit
from app.domain.caller import Caller
from app.domain.enums import AccessLevel, Action, ErrorCode
from app.domain.errors import DomainError, permission_denied, validation
from app.domain.events import Event, EventKind, emit, group_topic, machine_topic, user_topic
from app.domain.groups import GROUP, find_group
from app.domain.machines import MACHINE, find_machine
from app.domain.users import get_user


@dataclass(frozen=True)
class GrantView:
    """A user's level on a record, as the API lists it."""

    user: User
    level: AccessLevel


async def _record(session: AsyncSession, record_id: str, machine: bool) -> Record:
    return (
        await find_machine(session, record_id) if machine else await find_group(session, record_id)
    )


async def _authorize_sharing(session: AsyncSession, caller: Caller, record: Record) -> AccessLevel:
    """The caller's level for sharing purposes (an administrator acts as owner)."""
    what = MACHINE if isinstance(record, Machine) else GROUP
    field = "machineId" if isinstance(record, Machine) else "groupId"
    level = await authorize(
        session, caller, record, Action.SHARE, what=what, field=field, machine_level_change=True
    )
    return sharing_level(caller, record.environment_id, level)


async def share(
    session: AsyncSession,
    caller: Caller,
    record_id: str,
    user_id: str,
    level: AccessLevel,
    *,
    machine: bool,
) -> GrantView:
    """Grant (or replace) a user's level; nobody grants more than they hold."""
    record = await _record(session, record_id, machine)
    target = await get_user(session, user_id)
    own = await _authorize_sharing(session, caller, record)
    existing = await session.get(Grant, (kind_of(record).value, record.id, target.id))
    check_grant_change(own, level, AccessLevel(existing.level) if existing else None)
    if target.deactivated:
        raise DomainError(ErrorCode.USER_DEACTIVATED, f"{target.name} is deactivated", "userId")
    if target.id == record.owner_id:
        raise validation(f"{target.name} owns this record already", "userId")
    previous = existing.level if existing is not None else None
    if existing is None:
        session.add(
            Grant(
                record_kind=kind_of(record).value,
                record_id=record.id,
                user_id=target.id,
                level=level.value,
                created_at=caller.clock.now(),
            )
        )
    else:
        existing.level = level.value
    audit(
        session,
        caller,
        AuditKind.GRANT_SHARED,
        record_kind=kind_of(record).value,
        record_id=record.id,
        subject_user_id=target.id,
        detail={"access": level.value, "previous": previous},
    )
    return GrantView(target, level)


async def revoke(
    session: AsyncSession, caller: Caller, record_id: str, user_id: str, *, machine: bool
) -> GrantView:
    """Remove a user's grant; returns the grant that was removed."""
    record = await _record(session, record_id, machine)
    target = await get_user(session, user_id)
    own = await _authorize_sharing(session, caller, record)
    if target.id == record.owner_id:
        raise permission_denied("the owner's access can never be revoked")
    existing = await session.get(Grant, (kind_of(record).value, record.id, target.id))
    check_revoke(own, AccessLevel(existing.level) if existing else None)
    assert existing is not None  # refused above
    await session.delete(existing)
    record_topic = (
        machine_topic(record.id) if isinstance(record, Machine) else group_topic(record.id)
    )
    emit(session, Event(EventKind.ACCESS_CHANGED, (record_topic, user_topic(target.id))))
    audit(
        session,
        caller,
        AuditKind.GRANT_REVOKED,
        record_kind=kind_of(record).value,
        record_id=record.id,
        subject_user_id=target.id,
        detail={"access": existing.level},
    )
    return GrantView(target, AccessLevel(existing.level))
