"""Machine groups: create, edit, delete, maintenance and the group password."""

from __future__ import annotations

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from app.db.models import Grant, Machine, MachineGroup, PasswordFailure
from app.domain import passwords
from app.domain.access import authorize, require_privilege, require_region
from app.domain.audit import AuditKind, audit
from app.domain.broken import break_connections
from app.domain.caller import Caller
from app.domain.enums import Action, ErrorCode, RecordKind
from app.domain.environments import resolve_environment
from app.domain.errors import DomainError, conflict, not_found
from app.domain.events import Event, EventKind, emit, group_topic
from app.domain.records import locked
from app.domain.run_life.changes import cancel_queued_runs
from app.domain.validation import clean_description, clean_name, name_key

GROUP = "machine group"
GROUP_DELETED = "GROUP_DELETED"
KIND = RecordKind.MACHINE_GROUP.value


async def find_group(session: AsyncSession, group_id: str, *, lock: bool = False) -> MachineGroup:
    """The group with this id, or NOT_FOUND; `lock` holds its row for the transaction."""
    if lock:
        group = await locked(session, MachineGroup, group_id)
    else:
        group = await session.scalar(select(MachineGroup).where(col(MachineGroup.id) == group_id))
    if group is None:
        raise not_found(GROUP)
    return group


async def visible_group(
    session: AsyncSession, caller: Caller, group_id: str, action: Action = Action.VIEW
) -> MachineGroup:
    """The group, if the caller may see it and do `action` on it."""
    group = await find_group(session, group_id)
    await authorize(session, caller, group, action, what=GROUP)
    return group


async def _check_unique_name(
    session: AsyncSession, environment_id: str, name: str, exclude_id: str | None = None
) -> None:
    query = select(col(MachineGroup.name)).where(
        col(MachineGroup.environment_id) == environment_id,
        col(MachineGroup.name_key) == name_key(name),
    )
    if exclude_id is not None:
        query = query.where(col(MachineGroup.id) != exclude_id)
    existing = await session.scalar(query)
    if existing is not None:
        raise conflict(
            f"a machine group named {existing!r} exists already in this environment"
            " (names are compared ignoring case)",
            "name",
        )


async def create_group(
    session: AsyncSession,
    caller: Caller,
    *,
    environment_id: str | None,
    name: str,
    description: str | None,
) -> MachineGroup:
    """A new empty group owned by the caller."""
    environment = await resolve_environment(session, environment_id)
    await require_region(session, environment.id)
    require_privilege(
        caller, environment.id, RecordKind.MACHINE_GROUP, Action.CREATE, "create machine groups"
    )
    clean = clean_name(name)
    text = clean_description(description)
    await _check_unique_name(session, environment.id, clean)
    group = MachineGroup(
        environment_id=environment.id,
        name=clean,
        name_key=name_key(clean),
        description=text,
        owner_id=caller.viewer.id,
        created_at=caller.clock.now(),
    )
    session.add(group)
    await session.flush()
    return group


async def update_group(
    session: AsyncSession,
    caller: Caller,
    group_id: str,
    *,
    name: str | None,
    description: str | None,
) -> MachineGroup:
    """Rename or re-describe a group (an empty description clears it)."""
    group = await visible_group(session, caller, group_id, Action.EDIT)
    if name is not None:
        clean = clean_name(name)
        await _check_unique_name(session, group.environment_id, clean, exclude_id=group.id)
        group.name, group.name_key = clean, name_key(clean)
    if description is not None:
        group.description = clean_description(description)
    return group


async def delete_group(session: AsyncSession, caller: Caller, group_id: str) -> str:
    """Delete an empty group with its grants; returns its id."""
    group = await visible_group(session, caller, group_id, Action.DELETE)
    machines = await session.scalar(select(func.count()).where(col(Machine.group_id) == group.id))
    if machines:
        raise DomainError(
            ErrorCode.GROUP_NOT_EMPTY,
            f"remove the group's {machines} machine(s) before deleting it",
        )
    await session.execute(
        delete(Grant).where(
            col(Grant.record_kind) == RecordKind.MACHINE_GROUP.value,
            col(Grant.record_id) == group.id,
        )
    )
    await session.execute(delete(PasswordFailure).where(col(PasswordFailure.group_id) == group.id))
    await cancel_queued_runs(session, group.id, GROUP_DELETED, caller.clock.now())
    await break_connections(session, group_id=group.id, reason=GROUP_DELETED)
    await session.delete(group)
    audit(
        session,
        caller,
        AuditKind.GROUP_DELETED,
        record_kind=KIND,
        record_id=group.id,
        detail={"name": group.name},
    )
    emit(session, Event(EventKind.GROUP_DELETED, (group_topic(group.id),)))
    return group.id


async def may_regenerate_password(
    session: AsyncSession, caller: Caller, group_id: str, *, lock: bool = False
) -> MachineGroup:
    """The group, if the caller may regenerate its password now: the edit action, and
    under the regeneration throttle. `lock` holds the group's row (see below)."""
    group = await find_group(session, group_id, lock=lock)
    await authorize(session, caller, group, Action.EDIT, what=GROUP)
    await passwords.check_regeneration_allowed(session, group, caller.clock.now())
    return group


async def regenerate_password(
    session: AsyncSession, caller: Caller, group_id: str, password_hash: str
) -> None:
    """Store a new password's hash, made beforehand: Argon2id takes about 0.1 s, which no
    write transaction (on SQLite: every other writer) should wait for. The caller's right
    and the throttle are checked again here, with the group's row held, so two servers
    cannot both pass the throttle; the password is revealed only once this commits."""
    group = await may_regenerate_password(session, caller, group_id, lock=True)
    await passwords.replace(session, group, password_hash)
    audit(
        session, caller, AuditKind.GROUP_PASSWORD_REGENERATED, record_kind=KIND, record_id=group.id
    )


async def set_maintenance(
    session: AsyncSession, caller: Caller, group_id: str, enabled: bool
) -> MachineGroup:
    """Switch maintenance on or off: a group in maintenance dispatches nothing."""
    group = await visible_group(session, caller, group_id, Action.EDIT)
    group.maintenance = enabled
    emit(session, Event(EventKind.GROUP_CHANGED, (group_topic(group.id),)))
    return group
