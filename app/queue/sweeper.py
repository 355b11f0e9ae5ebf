"""The sweeper: ends overdue runs with a reason and notices machines going offline.

Runs are never restarted automatically: desktop flows drive user interfaces and are not
idempotent, so a lost or overdue run fails and someone decides whether to start it again.
Each expiry is one guarded UPDATE, so sweepers on several servers expire a run once.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from app.db.models import Machine, Run
from app.domain.enums import RunStatus
from app.domain.lifecycle import emit_run
from app.queue.events import Event, EventKind, emit, group_topic
from app.state import AppState

log = logging.getLogger(__name__)

QUEUE_TIMEOUT = "QUEUE_TIMEOUT"
RUN_TIMEOUT = "RUN_TIMEOUT"
MACHINE_LOST = "MACHINE_LOST"


async def _expire(
    session: AsyncSession,
    where: ColumnElement[bool],
    from_status: RunStatus,
    to_status: RunStatus,
    reason: str,
    now: datetime,
) -> int:
    expired = list(
        await session.scalars(
            update(Run)
            .where(where, col(Run.status) == from_status.value)
            .values(status=to_status.value, failure_reason=reason, finished_at=now)
            .returning(Run)
        )
    )
    for run in expired:
        emit_run(session, run)
    return len(expired)


async def sweep(state: AppState, last_sweep: datetime | None = None) -> datetime:
    """One pass: expire overdue runs, announce machines that went offline; returns `now`."""
    settings, now = state.settings, state.services.clock.now()
    offline_before = now - timedelta(seconds=settings.machine_timeout)
    lost_machines = select(col(Machine.id)).where(
        (col(Machine.last_seen_at) < offline_before) | col(Machine.last_seen_at).is_(None)
    )
    async with state.transaction() as session:
        expired = await _expire(
            session,
            col(Run.enqueued_at) < now - timedelta(seconds=settings.max_queue_seconds),
            RunStatus.QUEUED,
            RunStatus.FAILED,
            QUEUE_TIMEOUT,
            now,
        )
        expired += await _expire(
            session,
            col(Run.started_at) < now - timedelta(seconds=settings.max_run_seconds),
            RunStatus.RUNNING,
            RunStatus.TIMED_OUT,
            RUN_TIMEOUT,
            now,
        )
        expired += await _expire(
            session,
            col(Run.machine_id).in_(lost_machines),
            RunStatus.RUNNING,
            RunStatus.FAILED,
            MACHINE_LOST,
            now,
        )
        if last_sweep is not None:
            await _announce_offline(
                session, last_sweep - timedelta(seconds=settings.machine_timeout), offline_before
            )
    if expired:
        log.info("sweeper ended %d overdue run(s)", expired)
    return now


async def _announce_offline(session: AsyncSession, since: datetime, until: datetime) -> None:
    """Machines whose last heartbeat fell out of the timeout since the previous pass."""
    groups = await session.scalars(
        select(col(Machine.group_id))
        .where(
            col(Machine.group_id).is_not(None),
            col(Machine.last_seen_at) >= since,
            col(Machine.last_seen_at) < until,
        )
        .distinct()
    )
    for group_id in groups:
        if group_id is not None:
            emit(session, Event(EventKind.MACHINES_CHANGED, (group_topic(group_id),)))


async def run_sweeper(state: AppState, interval_seconds: float) -> None:
    """Sweep every `interval_seconds` until cancelled; an error is logged, not fatal."""
    last: datetime | None = None
    while True:
        await asyncio.sleep(interval_seconds)
        try:
            last = await sweep(state, last)
        except Exception:  # keep sweeping: the next pass retries what this one could not
            log.exception("sweeper pass failed")
