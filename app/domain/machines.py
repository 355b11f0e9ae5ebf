"""Machines: register, edit, delete, and the agent's heartbeat."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from app.db.models import Grant, Machine
from app.domain.access import authorize, require_privilege, require_region
from app.domain.audit import AuditKind, audit
from app.domain.broken import break_connections
from app.domain.caller import Caller
from app.domain.enums import Action, ErrorCode, RecordKind
from app.domain.environments import resolve_environment
from app.domain.errors import DomainError, not_found
from app.domain.events import Event, EventKind, emit, group_topic
from app.domain.identity import hash_machine_key, new_machine_key
from app.domain.run_life.changes import release_machine_runs
from app.domain.status import is_online
from app.domain.validation import clean_description, clean_name, name_key

MACHINE = "machine"


async def find_machine(session: AsyncSession, machine_id: str) -> Machine:
    """The machine with this id, or NOT_FOUND."""
    machine = await session.get(Machine, machine_id)
    if machine is None:
        raise not_found(MACHINE, "machineId")
    return machine


async def visible_machine(
    session: AsyncSession, caller: Caller, machine_id: str, action: Action = Action.VIEW
) -> Machine:
    """The machine, if the caller may see it and do `action` on it."""
    machine = await find_machine(session, machine_id)
    await authorize(session, caller, machine, action, what=MACHINE, field="machineId")
    return machine


async def register_machine(
    session: AsyncSession,
    caller: Caller,
    *,
    environment_id: str | None,
    name: str,
    description: str | None,
) -> tuple[Machine, str]:
    """A new machine owned by the caller, and its key (shown once, stored hashed)."""
    environment = await resolve_environment(session, environment_id)
    await require_region(session, environment.id)
    require_privilege(
        caller, environment.id, RecordKind.MACHINE, Action.REGISTER, "register machines"
    )
    if not caller.viewer.user.premium:
        raise DomainError(
            ErrorCode.PREMIUM_REQUIRED, "registering a machine needs a premium licence"
        )
    key = new_machine_key()
    clean = clean_name(name)
    machine = Machine(
        environment_id=environment.id,
        name=clean,
        name_key=name_key(clean),
        description=clean_description(description),
        owner_id=caller.viewer.id,
        key_hash=hash_machine_key(key),
        created_at=caller.clock.now(),
    )
    session.add(machine)
    await session.flush()
    audit(
        session,
        caller,
        AuditKind.MACHINE_REGISTERED,
        record_kind=RecordKind.MACHINE.value,
        record_id=machine.id,
        detail={"name": machine.name},
    )
    return machine, key


async def update_machine(
    session: AsyncSession,
    caller: Caller,
    machine_id: str,
    *,
    name: str | None,
    description: str | None,
) -> Machine:
    """Rename or re-describe a machine (names need not be unique)."""
    machine = await visible_machine(session, caller, machine_id, Action.EDIT)
    if name is not None:
        machine.name = clean_name(name)
        machine.name_key = name_key(machine.name)
    if description is not None:
        machine.description = clean_description(description)
    return machine


async def delete_machine(session: AsyncSession, caller: Caller, machine_id: str) -> str:
    """Delete a machine (leaving its group) with its grants; its connections break."""
    machine = await visible_machine(session, caller, machine_id, Action.DELETE)
    now = caller.clock.now()
    await release_machine_runs(session, machine.id, now)
    await break_connections(session, machine_id=machine.id, reason="MACHINE_DELETED")
    if machine.group_id:
        emit(session, Event(EventKind.MACHINES_CHANGED, (group_topic(machine.group_id),)))
    await session.execute(
        delete(Grant).where(
            col(Grant.record_kind) == RecordKind.MACHINE.value,
            col(Grant.record_id) == machine.id,
        )
    )
    await session.delete(machine)
    audit(
        session,
        caller,
        AuditKind.MACHINE_DELETED,
        record_kind=RecordKind.MACHINE.value,
        record_id=machine.id,
        detail={"name": machine.name},
    )
    return machine.id


async def touch(
    session: AsyncSession, machine_id: str, now: datetime, timeout_seconds: int
) -> Machine | None:
    """Record that the machine's agent called in: any agent call is a heartbeat."""
    machine = await session.get(Machine, machine_id)
    if machine is None:
        return None
    was_online = is_online(machine, now, timeout_seconds)
    machine.last_seen_at, machine.left_at = now, None
    if not was_online and machine.group_id:
        emit(session, Event(EventKind.MACHINES_CHANGED, (group_topic(machine.group_id),)))
    return machine
