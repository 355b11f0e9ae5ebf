"""The run queue of a group: dispatch order and positions."""

from __future__ import annotations

from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from app.db.models import Run
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
