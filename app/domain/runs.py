"""Runs: starting, cancelling and re-prioritising desktop flows; who sees which run."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import (
    BindParameter,
    ColumnElement,
    Select,
    bindparam,
    func,
    literal,
    or_,
    select,
    true,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from app.db.models import Machine, MachineGroup, Run
from app.domain.access import Record, Seen, authorize, co_owns_target
from app.domain.caller import Caller
from app.domain.connections import find_connection
from app.domain.enums import Action, ErrorCode, RunMode, RunPriority, RunStatus
from app.domain.errors import DomainError, conflict, not_found, permission_denied, validation
from app.domain.groups import GROUP
from app.domain.lifecycle import FINAL, already_ended, emit_run, finish
from app.domain.machines import MACHINE
from app.domain.pages import Page, page_newest_first
from app.domain.queue import PRIORITY_RANK
from app.domain.records import locked
from app.domain.validation import clean_name
from app.domain.visibility import visible_runs
from app.queue.events import EventKind

MAX_FLOW_NAME = 200
MAX_JSON_BYTES = 64 * 1024
CANCELLED_BY_USER = "CANCELLED_BY_USER"
RUN = "run"


def clean_flow_name(raw: str) -> str:
    """A flow name the agent can map to a program in its flows folder (a name by the
    rules of app/domain/validation.py, without path separators or a leading dot)."""
    name = clean_name(raw, "flowName", MAX_FLOW_NAME)
    if "/" in name or "\\" in name or name.startswith("."):
        raise validation("flowName must not hold path separators or start with a dot", "flowName")
    return name


def check_json_size(value: Any, field: str) -> Any:
    """JSON payloads (inputs, outputs) stay small; they travel in every run message."""
    if len(json.dumps(value, separators=(",", ":"))) > MAX_JSON_BYTES:
        raise validation(f"{field} must be at most {MAX_JSON_BYTES} bytes of JSON", field)
    return value


def _load_statement(model: type[Record]) -> Select[Any]:
    target_id: BindParameter[str] = bindparam("target_id")
    waiting_in = col(Run.group_id) if model is MachineGroup else col(Run.target_machine_id)
    queued = select(func.count()).where(
        waiting_in == target_id, col(Run.status) == RunStatus.QUEUED.value
    )
    machines = (
        select(func.count()).where(col(Machine.group_id) == target_id).scalar_subquery()
        if model is MachineGroup
        else literal(1)
    )
    return select(machines, queued.scalar_subquery())


# Starting a run is the busiest write: its statements are built once, with bound values.
_LOAD = {model: _load_statement(model) for model in (MachineGroup, Machine)}


async def queue_load(session: AsyncSession, target: Record) -> tuple[int, int]:
    """(machines that can serve it, runs waiting) of a group's or a machine's queue, in
    one statement."""
    row = (await session.execute(_LOAD[type(target)], {"target_id": target.id})).one()
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


async def visible_run(session: AsyncSession, caller: Caller, run_id: str) -> Run:
    """A run the caller may see, or NOT_FOUND."""
    run = await session.scalar(
        select(Run).where(col(Run.id) == run_id, visible_runs(caller.viewer).where)
    )
    if run is None:
        raise not_found(RUN, "id")
    return run


async def _require_run_manager(session: AsyncSession, caller: Caller, run: Run, what: str) -> None:
    """The starter, a co-owner of the run's target, or an administrator."""
    if run.started_by_id == caller.viewer.id:
        return
    if await co_owns_target(session, caller, run.group_id, run.target_machine_id):
        return
    raise permission_denied(f"only the run's starter or a co-owner of its target may {what}")


async def cancel_run(session: AsyncSession, caller: Caller, run_id: str) -> Run:
    """Cancel a queued or running run; a running run's agent learns it at its next call."""
    run = await visible_run(session, caller, run_id)
    await _require_run_manager(session, caller, run, "cancel it")
    if RunStatus(run.status) in FINAL:
        raise already_ended(run, "there is nothing left to cancel")
    finish(run, RunStatus.CANCELLED, CANCELLED_BY_USER, caller.clock.now())
    emit_run(session, run)
    return run


async def set_priority(
    session: AsyncSession, caller: Caller, run_id: str, priority: RunPriority
) -> Run:
    """Re-prioritise a queued run; it keeps its enqueue time within the new priority."""
    run = await visible_run(session, caller, run_id)
    await _require_run_manager(session, caller, run, "change its priority")
    if RunStatus(run.status) in FINAL:
        raise already_ended(run, "its priority no longer matters")
    if run.status == RunStatus.RUNNING.value:
        raise conflict("the run is running already: only a queued run's priority can change")
    run.priority = PRIORITY_RANK[priority]
    emit_run(session, run)
    return run


async def run_history(
    session: AsyncSession,
    caller: Caller,
    *,
    group_id: str | None,
    machine_id: str | None,
    statuses: list[RunStatus] | None,
    first: int | None,
    after: str | None,
) -> Page[Seen[Run]]:
    """Runs the caller may see, newest first, filtered by queue and status."""
    visible = visible_runs(caller.viewer)
    arms = [arm & visible.where for arm in _history_arms(group_id, machine_id, statuses)]
    page = await page_newest_first(session, Run, "enqueued_at", arms, first, after)
    return page.with_items(visible.seen(page.items))


def _history_arms(
    group_id: str | None, machine_id: str | None, statuses: list[RunStatus] | None
) -> list[ColumnElement[bool]]:
    """The filter of a history as disjoint parts, each read newest first along an index
    that orders it (migration 0008): (enqueued_at, id) for all runs, (status, ...) per
    status, (group_id, ...) and (group_id, status, ...) for a group's, and for a
    machine's, (target_machine_id, status, ...) and (machine_id, status, ...) per status,
    for the runs aimed at it and the runs it ran that were aimed elsewhere."""
    queues: list[ColumnElement[bool]] = [true()]
    if group_id is not None:
        queues = [col(Run.group_id) == group_id]
        if machine_id is not None:
            ran = or_(col(Run.machine_id) == machine_id, col(Run.target_machine_id) == machine_id)
            queues = [queues[0] & ran]
    elif machine_id is not None:
        aimed = col(Run.target_machine_id) == machine_id
        queues = [
            aimed,
            (col(Run.machine_id) == machine_id) & or_(col(Run.target_machine_id).is_(None), ~aimed),
        ]
        # A machine's runs have no (machine, moment) index: one arm per status instead.
        statuses = statuses or list(RunStatus)
    if not statuses:
        return queues
    return [
        queue & (col(Run.status) == status.value)
        for queue in queues
        for status in dict.fromkeys(statuses)
    ]
