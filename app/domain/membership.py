"""Machines joining and leaving groups."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from app.db.models import Connection, Machine, MachineGroup
from app.domain import passwords
from app.domain.access import authorize
from app.domain.broken import break_connections
from app.domain.caller import Caller
from app.domain.enums import Action, ErrorCode
from app.domain.errors import DomainError, conflict, validation
from app.domain.events import Event, EventKind, emit, group_topic, machine_topic
from app.domain.groups import GROUP, find_group
from app.domain.machines import MACHINE, find_machine

MACHINE_JOINED_GROUP = "MACHINE_JOINED_GROUP"


async def _admissible(
    session: AsyncSession, caller: Caller, machine_id: str, group_id: str, *, lock: bool
) -> tuple[Machine, MachineGroup]:
    """The machine and the group, if the caller may put one in the other: the add action
    on the group and on the machine (a machine moving from another group: the remove
    action there), in one environment."""
    machine = await find_machine(session, machine_id)
    group = await find_group(session, group_id, lock=lock)
    current: MachineGroup | None = None
    if machine.group_id and machine.group_id != group.id:
        current = await find_group(session, machine.group_id)
    await authorize(session, caller, machine, Action.VIEW, what=MACHINE, field="machineId")
    await authorize(session, caller, group, Action.ADD_MACHINE, what=GROUP, field="groupId")
    if current is not None:
        await authorize(session, caller, current, Action.REMOVE_MACHINE, what=GROUP)
    else:
        await authorize(session, caller, machine, Action.ADD_MACHINE, what=MACHINE)
    if machine.environment_id != group.environment_id:
        raise validation("the machine and the group are in different environments", "groupId")
    return machine, group


async def password_to_check(
    session: AsyncSession, caller: Caller, machine_id: str, group_id: str
) -> str | None:
    """The group's password hash, for a caller who may add the machine to a group that is
    not throttled: what to prove the password against before the write transaction (a
    refused caller costs no Argon2id)."""
    _machine, group = await _admissible(session, caller, machine_id, group_id, lock=False)
    if group.password_hash is not None:
        passwords.check_not_throttled(group, caller.clock.now())
    return group.password_hash


async def add_machine_to_group(
    session: AsyncSession,
    caller: Caller,
    machine_id: str,
    group_id: str,
    password: str,
    proof: passwords.Proof,
) -> tuple[Machine, list[Connection]]:
    """Put a machine in a group, with the group password proved beforehand (`proof`);
    returns the machine and the connections this broke.

    The group's row is locked for the transaction, so two adds racing for the last place
    cannot both win.
    """
    machine, group = await _admissible(session, caller, machine_id, group_id, lock=True)
    await passwords.admit(session, caller, group, password, proof)
    others = await session.scalar(
        select(func.count()).where(col(Machine.group_id) == group.id, col(Machine.id) != machine.id)
    )
    if (others or 0) >= caller.settings.max_machines_per_group:
        raise DomainError(
            ErrorCode.GROUP_FULL,
            f"the group holds its maximum of {caller.settings.max_machines_per_group} machines",
            "groupId",
        )
    if machine.group_id == group.id:
        raise conflict("the machine is in this group already", "machineId")
    previous = machine.group_id
    machine.group_id = group.id
    emit_machines_changed(session, machine.id, previous, group.id)
    broken = await break_connections(
        session, machine_id=machine.id, reason=MACHINE_JOINED_GROUP, forget_target=False
    )
    return machine, broken


async def remove_machine_from_group(
    session: AsyncSession, caller: Caller, machine_id: str
) -> Machine:
    """Take a machine out of its group; its own grants apply again."""
    machine = await find_machine(session, machine_id)
    if machine.group_id is None:
        await authorize(session, caller, machine, Action.REMOVE_MACHINE, what=MACHINE)
        raise conflict("the machine is in no group", "machineId")
    group = await find_group(session, machine.group_id)
    await authorize(session, caller, machine, Action.VIEW, what=MACHINE, field="machineId")
    await authorize(session, caller, group, Action.REMOVE_MACHINE, what=GROUP)
    machine.group_id = None
    emit_machines_changed(session, machine.id, group.id)
    return machine


def emit_machines_changed(session: AsyncSession, machine_id: str, *group_ids: str | None) -> None:
    """Tell the machine's old and new groups (and waiting agents) that membership changed."""
    topics = [machine_topic(machine_id)] + [group_topic(g) for g in group_ids if g is not None]
    emit(session, Event(EventKind.MACHINES_CHANGED, tuple(topics)))
