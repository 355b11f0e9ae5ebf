"""The run queue of a group: dispatch order and positions."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from app.db.models import Machine, MachineGroup, Run
from app.domain.clock import as_utc
from app.domain.enums import RunPriority, RunStatus
from app.domain.pages import check_page_size

PRIORITY_RANK = {RunPriority.LOW: 0, RunPriority.NORMAL: 1, RunPriority.HIGH: 2}
PRIORITY_OF_RANK = {rank: priority for priority, rank in PRIORITY_RANK.items()}
DISPATCH_ORDER = (col(Run.priority).desc(), col(Run.enqueued_at), col(Run.id))


async def queued_runs(session: AsyncSession, group_id: str, first: int | None) -> list[Run]:
    """The group's queued runs in dispatch order: HIGH, NORMAL, LOW, then first in first out."""
    query = (
        select(Run)
        .where(col(Run.group_id) == group_id, col(Run.status) == RunStatus.QUEUED.value)
        .order_by(*DISPATCH_ORDER)
        .limit(check_page_size(first))
    )
    return list(await session.scalars(query))


async def queue_position(session: AsyncSession, run: Run) -> int | None:
    """1-based place of a queued run in its queue; None once it left the queue."""
    if run.status != RunStatus.QUEUED.value:
        return None
    same_queue = (
        col(Run.group_id) == run.group_id
        if run.group_id is not None
        else col(Run.target_machine_id) == run.target_machine_id
    )
    ahead = await session.scalar(
        select(func.count()).where(
            same_queue,
            col(Run.status) == RunStatus.QUEUED.value,
            or_(
                col(Run.priority) > run.priority,
                (col(Run.priority) == run.priority) & (col(Run.enqueued_at) < run.enqueued_at),
                (col(Run.priority) == run.priority)
                & (col(Run.enqueued_at) == run.enqueued_at)
                & (col(Run.id) < run.id),
            ),
        )
    )
    return (ahead or 0) + 1


@dataclass(frozen=True)
class QueueCounts:
    """A group's queue and machines at one moment."""

    queued: int
    running: int
    machines: int
    online: int
    idle: int


async def queue_counts(
    session: AsyncSession, group: MachineGroup, now: datetime, timeout_seconds: int
) -> QueueCounts:
    """Counts for `queueStatus`: three statements whatever the group's size."""
    runs = dict(
        (status, count)
        for status, count in await session.execute(
            select(col(Run.status), func.count())
            .where(
                col(Run.group_id) == group.id,
                col(Run.status).in_([RunStatus.QUEUED.value, RunStatus.RUNNING.value]),
            )
            .group_by(col(Run.status))
        )
    )
    online_since = now - timedelta(seconds=timeout_seconds)
    machines = list(
        await session.execute(
            select(col(Machine.id), col(Machine.last_seen_at)).where(
                col(Machine.group_id) == group.id
            )
        )
    )
    busy = set(
        await session.scalars(
            select(col(Run.machine_id)).where(
                col(Run.machine_id).in_([machine_id for machine_id, _seen in machines]),
                col(Run.status) == RunStatus.RUNNING.value,
            )
        )
    )
    online = [m for m, seen in machines if seen is not None and as_utc(seen) >= online_since]
    idle = [] if group.maintenance else [m for m in online if m not in busy]
    return QueueCounts(
        queued=runs.get(RunStatus.QUEUED.value, 0),
        running=runs.get(RunStatus.RUNNING.value, 0),
        machines=len(machines),
        online=len(online),
        idle=len(idle),
    )


ESTIMATE_SAMPLE = 20


async def estimated_start(
    session: AsyncSession, run: Run, position: int | None, now: datetime
) -> datetime | None:
    """When a queued run should start, from the queue's recent run durations.

    The average of the last finished runs of the same queue, times the waves of work
    ahead of this run across the queue's machines; None without history or machines.
    """
    if position is None:
        return None
    same_queue = (
        col(Run.group_id) == run.group_id
        if run.group_id is not None
        else col(Run.target_machine_id) == run.target_machine_id
    )
    recent = list(
        await session.execute(
            select(col(Run.started_at), col(Run.finished_at))
            .where(same_queue, col(Run.started_at).is_not(None), col(Run.finished_at).is_not(None))
            .order_by(col(Run.finished_at).desc())
            .limit(ESTIMATE_SAMPLE)
        )
    )
    durations = [
        (as_utc(end) - as_utc(start)).total_seconds()
        for start, end in recent
        if start is not None and end is not None
    ]
    if not durations:
        return None
    average = sum(durations) / len(durations)
    if run.group_id is not None:
        machines = await session.scalar(
            select(func.count()).where(col(Machine.group_id) == run.group_id)
        )
    else:
        machines = 1
    if not machines:
        return None
    running = await session.scalar(
        select(func.count()).where(same_queue, col(Run.status) == RunStatus.RUNNING.value)
    )
    waves = (position - 1 + (running or 0)) // machines
    return now + timedelta(seconds=waves * average)
