"""The sweeper: ends overdue runs with a reason and notices machines going offline.

Runs are never restarted automatically: desktop flows drive user interfaces and are not
idempotent, so a lost or overdue run fails and someone decides whether to start it again.
Each expiry is one guarded UPDATE, so sweepers on several servers expire a run once.
Time during which no server was up does not count against a machine (app/queue/uptime.py).
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import BindParameter, ColumnElement, bindparam, exists, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from app.db.models import Machine, Run
from app.domain.enums import RunStatus
from app.domain.lifecycle import emit_run
from app.queue.events import Event, EventKind, emit, group_topic
from app.queue.uptime import record_alive, up_since
from app.state import AppState

log = logging.getLogger(__name__)

QUEUE_TIMEOUT = "QUEUE_TIMEOUT"
RUN_TIMEOUT = "RUN_TIMEOUT"
MACHINE_LOST = "MACHINE_LOST"


def _expiry(overdue: ColumnElement[bool], from_status: RunStatus, to_status: RunStatus) -> Any:
    """End the runs in `from_status` that are `overdue` (bound parameters: `cutoff`,
    `now`, `reason`); built once, as the sweeper runs every second."""
    return (
        update(Run)
        .where(overdue, col(Run.status) == from_status.value)
        .values(
            status=to_status.value, failure_reason=bindparam("reason"), finished_at=bindparam("now")
        )
        .returning(Run)
        .execution_options(synchronize_session=False)
    )


_CUTOFF: BindParameter[datetime] = bindparam("cutoff")
_QUEUED_TOO_LONG = _expiry(col(Run.enqueued_at) < _CUTOFF, RunStatus.QUEUED, RunStatus.FAILED)
_RUNNING_TOO_LONG = _expiry(col(Run.started_at) < _CUTOFF, RunStatus.RUNNING, RunStatus.TIMED_OUT)
# Each running run looks up its own machine: `IN (machines not seen since the cutoff)`
# listed every such machine, every second, though few or none of them run anything.
_MACHINE_LOST = _expiry(
    exists().where(
        col(Machine.id) == col(Run.machine_id),
        (col(Machine.last_seen_at) < _CUTOFF) | col(Machine.last_seen_at).is_(None),
    ),
    RunStatus.RUNNING,
    RunStatus.FAILED,
)


async def _expire(
    session: AsyncSession, statement: Any, cutoff: datetime, reason: str, now: datetime
) -> int:
    parameters = {"cutoff": cutoff, "reason": reason, "now": now}
    expired = list(await session.scalars(statement, parameters))
    for run in expired:
        emit_run(session, run)
    return len(expired)


async def sweep(state: AppState, last_sweep: datetime | None = None) -> datetime:
    """One pass: expire overdue runs, announce machines that went offline; returns `now`."""
    settings, now = state.settings, state.services.clock.now()
    offline_before = now - timedelta(seconds=settings.machine_timeout)
    async with state.transaction() as session:
        await record_alive(session, state.server_id, now)
        queue_cutoff = now - timedelta(seconds=settings.max_queue_seconds)
        expired = await _expire(session, _QUEUED_TOO_LONG, queue_cutoff, QUEUE_TIMEOUT, now)
        run_cutoff = now - timedelta(seconds=settings.max_run_seconds)
        expired += await _expire(session, _RUNNING_TOO_LONG, run_cutoff, RUN_TIMEOUT, now)
        # A machine is lost once silent for the timeout, counted from its last heartbeat
        # or from when the service became up, whichever is later: agents retry through an
        # outage with a backoff, and a restart must not fail the runs they still run.
        if await up_since(session, now, offline_before) < offline_before:
            expired += await _expire(session, _MACHINE_LOST, offline_before, MACHINE_LOST, now)
        if last_sweep is not None:
            await _announce_offline(
                session, last_sweep - timedelta(seconds=settings.machine_timeout), offline_before
            )
    if expired:
        log.info("sweeper ended %d overdue run(s)", expired)
    return now


_WENT_OFFLINE = (
    select(col(Machine.group_id))
    .where(
        col(Machine.group_id).is_not(None),
        col(Machine.last_seen_at) >= bindparam("since"),
        col(Machine.last_seen_at) < bindparam("until"),
    )
    .distinct()
)


async def _announce_offline(session: AsyncSession, since: datetime, until: datetime) -> None:
    """Machines whose last heartbeat fell out of the timeout since the previous pass."""
    groups = await session.scalars(_WENT_OFFLINE, {"since": since, "until": until})
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
