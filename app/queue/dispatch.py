"""Dispatch: a machine's agent claims the next run atomically and reports its end."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from app.db.models import Machine, MachineGroup, Run
from app.domain.enums import ErrorCode, RunStatus
from app.domain.errors import DomainError, not_found
from app.domain.lifecycle import emit_run, finish
from app.domain.queue import DISPATCH_ORDER
from app.domain.runs import check_json_size
from app.queue.events import EventKind, group_topic, machine_topic
from app.state import AppState

MAX_WAIT_SECONDS = 60
# Events that can make work claimable for a waiting machine.
WAKING = frozenset(
    {
        EventKind.RUN_QUEUED,
        EventKind.RUN_CHANGED,
        EventKind.GROUP_CHANGED,
        EventKind.MACHINES_CHANGED,
    }
)


def _queue_of(machine: Machine) -> Any:
    """The queues a machine serves: its group's, and runs aimed at it directly."""
    own = col(Run.target_machine_id) == machine.id
    return or_(col(Run.group_id) == machine.group_id, own) if machine.group_id else own


async def _has_work(session: AsyncSession, machine: Machine) -> bool:
    found = await session.scalar(
        select(col(Run.id))
        .where(_queue_of(machine), col(Run.status) == RunStatus.QUEUED.value)
        .limit(1)
    )
    return found is not None


async def claim(session: AsyncSession, machine_id: str, now: datetime) -> Run | None:
    """Give the machine its next run, if it is idle and not in maintenance.

    Runs in one write transaction: SQLite's BEGIN IMMEDIATE serialises claimers, and on
    PostgreSQL the candidate row is locked with SKIP LOCKED, so no run goes to two
    machines and no machine gets two runs.
    """
    machine = await session.get(Machine, machine_id)
    if machine is None:
        raise not_found("machine")
    busy = await session.scalar(
        select(col(Run.id)).where(
            col(Run.machine_id) == machine.id, col(Run.status) == RunStatus.RUNNING.value
        )
    )
    if busy is not None:
        return None
    if machine.group_id:
        group = await session.get(MachineGroup, machine.group_id)
        if group is not None and group.maintenance:
            return None
    candidate = await session.scalar(
        select(Run)
        .where(_queue_of(machine), col(Run.status) == RunStatus.QUEUED.value)
        .order_by(*DISPATCH_ORDER)
        .limit(1)
        .with_for_update(skip_locked=True)
    )
    if candidate is None:
        return None
    candidate.status = RunStatus.RUNNING.value
    candidate.machine_id = machine.id
    candidate.started_at = now
    emit_run(session, candidate)
    return candidate


async def claim_next_run(state: AppState, machine_id: str, wait_seconds: int) -> Run | None:
    """Claim at once, or wait up to `wait_seconds` and claim as soon as work is queued.

    Woken by events on the machine's topics, not by polling the database.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + max(0, min(wait_seconds, MAX_WAIT_SECONDS))
    async with state.db.read() as session:
        machine = await session.get(Machine, machine_id)
    if machine is None:
        raise not_found("machine")
    topics = [machine_topic(machine.id)]
    if machine.group_id:
        topics.append(group_topic(machine.group_id))
    async with state.bus.listen(*topics) as inbox:
        while True:
            async with state.db.read() as session:
                machine = await session.get(Machine, machine_id)
                worth_trying = machine is not None and await _has_work(session, machine)
            if worth_trying:
                async with state.transaction() as session:
                    run = await claim(session, machine_id, state.services.clock.now())
                if run is not None:
                    return run
            remaining = deadline - loop.time()
            if remaining <= 0:
                return None
            event = await inbox.next(remaining)
            while event is not None and event.kind not in WAKING:
                event = await inbox.next(max(0.0, deadline - loop.time()))


async def complete(
    session: AsyncSession,
    machine_id: str,
    run_id: str,
    *,
    succeeded: bool,
    output: Any,
    message: str | None,
    now: datetime,
) -> Run:
    """End the run the machine holds; anyone else's report changes nothing."""
    run = await session.scalar(select(Run).where(col(Run.id) == run_id).with_for_update())
    if run is None:
        raise not_found("run", "id")
    if run.machine_id != machine_id:
        raise DomainError(ErrorCode.LEASE_LOST, "this machine does not hold the run", "id")
    if run.status != RunStatus.RUNNING.value:
        raise DomainError(
            ErrorCode.RUN_NOT_ACTIVE,
            f"the run has ended ({run.status}, {run.failure_reason})",
            "id",
        )
    check_json_size(output, "output")
    run.output = output
    if succeeded:
        finish(run, RunStatus.SUCCEEDED, None, now)
    else:
        finish(run, RunStatus.FAILED, (message or "the flow failed")[:1000], now)
    emit_run(session, run)
    return run
