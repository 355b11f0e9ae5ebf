"""The sweeper: ends overdue runs with a reason and notices machines going offline.

Runs are never restarted automatically: desktop flows drive user interfaces and are not
idempotent, so a lost or overdue run fails and someone decides whether to start it again.
The one run that goes back to the queue is an offer its agent never confirmed: it never
started. The expiries themselves are the run's life (app/domain/run_life/); each is one
guarded UPDATE, so sweepers on several servers expire a run once. Time during which no
server was up does not count against a machine (app/queue/uptime.py).
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta

from sqlalchemy import bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from app.db.models import Machine
from app.domain.events import Event, EventKind, emit, group_topic
from app.domain.run_life.changes import expire_overdue
from app.queue.hub import Hub
from app.queue.uptime import record_alive, up_since

log = logging.getLogger(__name__)

# An offer on the channel not confirmed within this long goes back to the queue: agents
# confirm at once, so its agent is gone or stuck (it never started the flow).
OFFER_SECONDS = 10


async def sweep(hub: Hub, last_sweep: datetime | None = None) -> datetime:
    """One pass: expire overdue runs, announce machines that went offline; returns `now`."""
    settings, now = hub.settings, hub.clock.now()
    offline_before = now - timedelta(seconds=settings.machine_timeout)
    async with hub.transaction() as session:
        await record_alive(session, hub.server_id, now)
        # A machine is lost once silent for the timeout, counted from its last heartbeat
        # or from when the service became up, whichever is later: agents retry through an
        # outage with a backoff, and a restart must not fail the runs they still run.
        up = await up_since(session, now, offline_before)
        expired = await expire_overdue(
            session,
            now,
            queued_before=now - timedelta(seconds=settings.max_queue_seconds),
            started_before=now - timedelta(seconds=settings.max_run_seconds),
            offered_before=now - timedelta(seconds=OFFER_SECONDS),
            silent_before=offline_before if up < offline_before else None,
            silent_since=_lost_checked_since(last_sweep, up, settings.machine_timeout),
        )
        if last_sweep is not None:
            await _announce_offline(
                session, last_sweep - timedelta(seconds=settings.machine_timeout), offline_before
            )
    if expired:
        log.info("sweeper ended %d overdue run(s)", expired)
    return now


def _lost_checked_since(last_sweep: datetime | None, up: datetime, timeout: int) -> datetime | None:
    """Where this pass's check for lost machines may start: every running run was checked
    by the previous pass when the service was up past its grace by then, so only machines
    whose heartbeat expired since can be lost. The window reaches one timeout further
    back, for heartbeats committed late (another server, a slow transaction). None: check
    every running run (the first pass, or the first after an outage's grace)."""
    if last_sweep is None:
        return None
    previous_cutoff = last_sweep - timedelta(seconds=timeout)
    if up >= previous_cutoff:
        return None
    return previous_cutoff - timedelta(seconds=timeout)


# A range of ix_machines_last_seen_at (migration 0012), the machines whose heartbeat
# expired since the previous pass: a few, where a walk of the grouped machines read them
# all each second. Their groups are told once each (the set below, not a DISTINCT, which
# would sort them).
_WENT_OFFLINE = select(col(Machine.group_id)).where(
    col(Machine.last_seen_at) >= bindparam("since"),
    col(Machine.last_seen_at) < bindparam("until"),
    col(Machine.group_id).is_not(None),
)


async def _announce_offline(session: AsyncSession, since: datetime, until: datetime) -> None:
    """Machines whose last heartbeat fell out of the timeout since the previous pass."""
    connection = await session.connection()
    found = await connection.execute(_WENT_OFFLINE, {"since": since, "until": until})
    groups = set(found.scalars())
    for group_id in groups:
        if group_id is not None:
            emit(session, Event(EventKind.MACHINES_CHANGED, (group_topic(group_id),)))


async def run_sweeper(hub: Hub, interval_seconds: float) -> None:
    """Sweep every `interval_seconds` until cancelled; an error is logged, not fatal."""
    last: datetime | None = None
    while True:
        await asyncio.sleep(interval_seconds)
        try:
            last = await sweep(hub, last)
        except Exception:  # keep sweeping: the next pass retries what this one could not
            log.exception("sweeper pass failed")
