"""How runs and connections end when what they depend on goes away, and run events."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from app.db.models import Connection, Run
from app.domain.enums import ConnectionStatus, ErrorCode, RunStatus
from app.domain.errors import DomainError
from app.queue.events import Event, EventKind, emit, group_topic, machine_topic, run_topic

FINAL = frozenset({RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED, RunStatus.TIMED_OUT})


def run_topics(run: Run) -> tuple[str, ...]:
    """The topics a change of this run is published on."""
    topics = [run_topic(run.id)]
    if run.group_id:
        topics.append(group_topic(run.group_id))
    for machine_id in {run.target_machine_id, run.machine_id} - {None}:
        assert machine_id is not None
        topics.append(machine_topic(machine_id))
    return tuple(topics)


def emit_run(session: AsyncSession, run: Run, kind: EventKind = EventKind.RUN_CHANGED) -> None:
    """Publish a run's change once the transaction commits."""
    emit(session, Event(kind, run_topics(run), run.id))


def already_ended(run: Run, consequence: str) -> DomainError:
    """RUN_NOT_ACTIVE for a run in a final status: which status (and why, if it failed),
    and what that means for the request."""
    how = f"{run.status}, {run.failure_reason}" if run.failure_reason else run.status
    return DomainError(
        ErrorCode.RUN_NOT_ACTIVE, f"the run has ended already ({how}): {consequence}", "id"
    )


def finish(run: Run, status: RunStatus, reason: str | None, now: datetime) -> None:
    """Put a run in a final status with its reason."""
    run.status = status.value
    run.failure_reason = reason
    run.finished_at = now


async def cancel_queued_runs(
    session: AsyncSession, group_id: str, reason: str, now: datetime
) -> None:
    """Cancel every run waiting in a group's queue, with the reason."""
    for run in await session.scalars(
        select(Run).where(col(Run.group_id) == group_id, col(Run.status) == RunStatus.QUEUED.value)
    ):
        finish(run, RunStatus.CANCELLED, reason, now)
        emit_run(session, run)


async def break_connections(
    session: AsyncSession,
    *,
    reason: str,
    machine_id: str | None = None,
    group_id: str | None = None,
    forget_target: bool = True,
) -> list[Connection]:
    """Mark the active connections aiming at a machine or group broken; returns them."""
    target = (
        col(Connection.machine_id) == machine_id
        if machine_id is not None
        else col(Connection.group_id) == group_id
    )
    values: dict[str, object] = {
        "status": ConnectionStatus.BROKEN.value,
        "broken_reason": reason,
    }
    if forget_target:
        values.update(machine_id=None, group_id=None)
    broken = await session.scalars(
        update(Connection).where(target).values(**values).returning(Connection)
    )
    return list(broken)


async def release_machine_runs(session: AsyncSession, machine_id: str, now: datetime) -> None:
    """A deleted machine: its running run fails and runs aimed at it are cancelled."""
    for run in await session.scalars(
        select(Run).where(
            or_(col(Run.machine_id) == machine_id, col(Run.target_machine_id) == machine_id),
            col(Run.status).in_([RunStatus.QUEUED.value, RunStatus.RUNNING.value]),
        )
    ):
        status = RunStatus.FAILED if run.status == RunStatus.RUNNING.value else RunStatus.CANCELLED
        finish(run, status, "MACHINE_DELETED", now)
        emit_run(session, run)
    await session.execute(
        update(Run).where(col(Run.machine_id) == machine_id).values(machine_id=None)
    )
    await session.execute(
        update(Run).where(col(Run.target_machine_id) == machine_id).values(target_machine_id=None)
    )
