"""Users' requests on runs: start, cancel and re-prioritise (through the table)."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.db.models import Machine, MachineGroup, Run
from app.domain.access import Record, authorize, co_owns_target
from app.domain.caller import Caller
from app.domain.connections import find_connection
from app.domain.enums import Action, ErrorCode, RunMode, RunPriority
from app.domain.errors import DomainError, permission_denied, validation
from app.domain.events import EventKind
from app.domain.groups import GROUP
from app.domain.machines import MACHINE
from app.domain.queue import PRIORITY_RANK
from app.domain.records import locked
from app.domain.run_life import statements as sql
from app.domain.run_life.changes import apply, check_json_size, emit_run
from app.domain.run_life.transitions import RunEvent
from app.domain.runs import visible_run
from app.domain.validation import clean_name

MAX_FLOW_NAME = 200
CANCELLED_BY_USER = "CANCELLED_BY_USER"


# -- start ----------------------------------------------------------------------------


def clean_flow_name(raw: str) -> str:
    """A flow name the agent can map to a program in its flows folder (a name by the
    rules of app/domain/validation.py, without path separators or a leading dot)."""
    name = clean_name(raw, "flowName", MAX_FLOW_NAME)
    if "/" in name or "\\" in name or name.startswith("."):
        raise validation("flowName must not hold path separators or start with a dot", "flowName")
    return name


async def queue_load(session: AsyncSession, target: Record) -> tuple[int, int]:
    """(machines that can serve it, runs waiting) of a group's or a machine's queue, in
    one statement."""
    row = (await session.execute(sql.LOAD[type(target)], {"target_id": target.id})).one()
    return int(row[0]), int(row[1])


async def start_run(
    session: AsyncSession,
    caller: Caller,
    *,
    connection_id: str,
    flow_name: str,
    run_mode: RunMode,
    priority: RunPriority,
    inputs: Any,
) -> Run:
    """Queue a desktop flow on the connection's target."""
    connection = await find_connection(session, caller, connection_id, "connectionId")
    model: type[Record] = MachineGroup if connection.group_id else Machine
    what = GROUP if connection.group_id else MACHINE
    target_id = connection.group_id or connection.machine_id
    # Locked, so runs started at once cannot both take the queue's last place.
    target = await locked(session, model, target_id) if target_id else None
    if target is not None:
        await authorize(session, caller, target, Action.RUN, what=what)
    name = clean_flow_name(flow_name)
    check_json_size(inputs, "inputs")
    if target is None or connection.status != "ACTIVE":
        raise DomainError(
            ErrorCode.CONNECTION_BROKEN,
            f"the connection is broken ({connection.broken_reason or 'no target'}):"
            " retarget it with updateConnection",
            "connectionId",
        )
    machines, queued = await queue_load(session, target)
    if not machines:
        raise DomainError(
            ErrorCode.NO_MACHINES,
            "a group needs at least one machine to run desktop flows: add one with"
            " addMachineToGroup",
            "connectionId",
        )
    if queued >= caller.settings.max_queued_runs:
        raise DomainError(
            ErrorCode.QUEUE_FULL,
            f"the queue holds its maximum of {caller.settings.max_queued_runs} runs: start"
            " this run once some have left it",
            "connectionId",
        )
    is_group = isinstance(target, MachineGroup)
    run = Run(
        flow_name=name,
        inputs=inputs,
        priority=PRIORITY_RANK[priority],
        run_mode=run_mode.value,
        group_id=target.id if is_group else None,
        target_machine_id=None if is_group else target.id,
        connection_id=connection.id,
        started_by_id=caller.viewer.id,
        enqueued_at=caller.clock.now(),
    )
    session.add(run)
    await session.flush()
    emit_run(session, run, EventKind.RUN_QUEUED)
    return run


# -- the starter's and co-owners' changes ---------------------------------------------


async def _require_run_manager(session: AsyncSession, caller: Caller, run: Run, what: str) -> None:
    """The starter, a co-owner of the run's target, or an administrator."""
    if run.started_by_id == caller.viewer.id:
        return
    if await co_owns_target(session, caller, run.group_id, run.target_machine_id):
        return
    raise permission_denied(f"only the run's starter or a co-owner of its target may {what}")


async def cancel_run(session: AsyncSession, caller: Caller, run_id: str) -> Run:
    """Cancel a queued, offered or running run; a held run's agent is told at once on
    its channel (an HTTP agent learns it at its next call)."""
    run = await visible_run(session, caller, run_id)
    await _require_run_manager(session, caller, run, "cancel it")
    apply(run, RunEvent.CANCEL, CANCELLED_BY_USER, caller.clock.now())
    emit_run(session, run)
    return run


async def set_priority(
    session: AsyncSession, caller: Caller, run_id: str, priority: RunPriority
) -> Run:
    """Re-prioritise a queued run; it keeps its enqueue time within the new priority."""
    run = await visible_run(session, caller, run_id)
    await _require_run_manager(session, caller, run, "change its priority")
    apply(run, RunEvent.REPRIORITISE, None, caller.clock.now())
    run.priority = PRIORITY_RANK[priority]
    emit_run(session, run)
    return run
