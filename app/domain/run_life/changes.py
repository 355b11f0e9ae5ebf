"""The run's changes: hand over (claim or offer), confirm, complete, withdraw, expire,
and what happens to runs whose group or machine goes away; all through the table.

Nothing here reads who is asking: the machine side is authenticated by its key, the
sweeper is the service itself. Users' requests (start, cancel, priority) are in
app/domain/run_life/requests.py.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.models import Run
from app.domain.enums import ErrorCode, RunStatus
from app.domain.errors import DomainError, not_found, validation
from app.domain.events import Event, EventKind, emit, group_topic, machine_topic, run_topic
from app.domain.run_life import statements as sql
from app.domain.run_life.transitions import RunEvent, RunState, step, why_not

MAX_JSON_BYTES = 64 * 1024
QUEUE_TIMEOUT = "QUEUE_TIMEOUT"
RUN_TIMEOUT = "RUN_TIMEOUT"
MACHINE_LOST = "MACHINE_LOST"
MACHINE_DELETED = "MACHINE_DELETED"


# -- states and events ----------------------------------------------------------------


def state_of(run: Run) -> RunState:
    """The run's state in the transition table."""
    if run.status == RunStatus.RUNNING.value and run.confirmed_at is None:
        return RunState.OFFERED
    return RunState(run.status)


def apply(run: Run, event: RunEvent, reason: str | None, now: datetime) -> None:
    """Move a run held as an object along the table (the API's error if it may not)."""
    following = step(state_of(run), event, run.failure_reason)
    run.status = following.status.value
    if following.final:
        run.failure_reason = reason
        run.finished_at = now


class RunKeys(Protocol):
    """What a run's change is published by: a Run, or a row a statement returned."""

    @property
    def id(self) -> str: ...
    @property
    def group_id(self) -> str | None: ...
    @property
    def target_machine_id(self) -> str | None: ...
    @property
    def machine_id(self) -> str | None: ...


def run_topics(run: RunKeys) -> tuple[str, ...]:
    """The topics a change of this run is published on."""
    topics = [run_topic(run.id)]
    if run.group_id:
        topics.append(group_topic(run.group_id))
    for machine_id in {run.target_machine_id, run.machine_id} - {None}:
        assert machine_id is not None
        topics.append(machine_topic(machine_id))
    return tuple(topics)


def emit_run(
    session: AsyncSession,
    run: RunKeys,
    kind: EventKind = EventKind.RUN_CHANGED,
    also: str | None = None,
) -> None:
    """Publish a run's change once the transaction commits (`also`: one more topic, as
    the machine a withdrawn offer left)."""
    topics = run_topics(run)
    emit(session, Event(kind, (*topics, also) if also else topics, run.id))


def check_json_size(value: Any, field: str) -> Any:
    """JSON payloads (inputs, outputs) stay small; they travel in every run message."""
    if len(json.dumps(value, separators=(",", ":"))) > MAX_JSON_BYTES:
        raise validation(f"{field} must be at most {MAX_JSON_BYTES} bytes of JSON", field)
    return value


# -- handing runs to machines ---------------------------------------------------------


async def outlook(session: AsyncSession, machine_id: str) -> Row[Any]:
    """Whether the machine could take a run now (group_id, busy, maintenance, group_work,
    own_work), in one read; NOT_FOUND once the machine is gone."""
    found = (await session.execute(sql.OUTLOOK, {"machine_id": machine_id})).one_or_none()
    if found is None:
        raise not_found("machine")
    return found


async def claim(session: AsyncSession, machine_id: str, now: datetime) -> Run | None:
    """CLAIM: the machine's next run, RUNNING at once (handed over in an answer), if it
    is idle and not in maintenance (one statement in the caller's write transaction)."""
    run = (await session.scalars(sql.CLAIM, {"machine_id": machine_id, "now": now})).one_or_none()
    if run is not None:
        emit_run(session, run)
    return run


async def offer(
    session: AsyncSession, machine_id: str, channel_id: str, now: datetime
) -> Run | None:
    """OFFER: the machine's next run, held for it until its agent confirms, if it is idle,
    not in maintenance and `channel_id` is still its channel (one statement)."""
    values = {"machine_id": machine_id, "channel_id": channel_id, "now": now}
    run = (await session.scalars(sql.OFFER, values)).one_or_none()
    if run is not None:
        emit_run(session, run)
    return run


async def confirm(session: AsyncSession, machine_id: str, run_id: str, now: datetime) -> Run:
    """CONFIRM: the agent takes an offered run; only then may it start the flow. Refused
    (LEASE_LOST, RUN_NOT_ACTIVE) once the offer was withdrawn or the run ended."""
    values = {"run_id": run_id, "holder_id": machine_id, "now": now}
    run = (await session.scalars(sql.CONFIRM, values)).one_or_none()
    if run is None:
        await _why_not_held(session, machine_id, run_id, RunEvent.CONFIRM)
        raise AssertionError("an offer this machine holds was not confirmed")
    # No event: the run's status (RUNNING) and counts are as they were; nobody is told.
    return run


async def withdraw_offers(session: AsyncSession, machine_id: str) -> list[Run]:
    """WITHDRAW: the machine's unconfirmed offer goes back to the queue, at its old place
    (its channel closed, or a new channel opened: the offer never started)."""
    runs = list(await session.scalars(sql.WITHDRAW_OFFERS_OF, {"holder_id": machine_id}))
    for run in runs:
        emit_run(session, run, EventKind.RUN_QUEUED, also=machine_topic(machine_id))
    return runs


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
    """SUCCEED or FAIL: end the run the machine holds; anyone else's report changes nothing.

    One UPDATE that matches only a RUNNING run held by this machine; when it matches
    nothing, a read says why.
    """
    event = RunEvent.SUCCEED if succeeded else RunEvent.FAIL
    try:
        check_json_size(output, "output")
    except DomainError:
        await _why_not_held(session, machine_id, run_id, event)
        raise
    values = {
        "run_id": run_id,
        "holder_id": machine_id,
        "new_output": output,
        "new_status": step(RunState.RUNNING, event).status.value,
        "reason": None if succeeded else (message or "the flow failed")[:1000],
        "now": now,
    }
    run = (await session.scalars(sql.COMPLETE, values)).one_or_none()
    if run is None:
        await _why_not_held(session, machine_id, run_id, event)
        raise AssertionError("a run this machine holds was not updated")
    emit_run(session, run)
    return run


async def _why_not_held(
    session: AsyncSession, machine_id: str, run_id: str, event: RunEvent
) -> None:
    """Raise why the machine may not report the run, if it may not (else return)."""
    run = await session.get(Run, run_id)
    if run is None:
        raise not_found("run", "id")
    if run.machine_id != machine_id:
        raise DomainError(ErrorCode.LEASE_LOST, "this machine does not hold the run", "id")
    state = state_of(run)
    if state.final:
        raise why_not(state, event, run.failure_reason)
    if state is RunState.OFFERED:
        raise DomainError(ErrorCode.CONFLICT, "confirm the run (confirmRun) first", "id")
    if event is RunEvent.CONFIRM:
        raise DomainError(ErrorCode.CONFLICT, "the run was confirmed already", "id")


# -- expiries and departures ----------------------------------------------------------


async def _sweep(session: AsyncSession, statement: Any, parameters: dict[str, Any]) -> list[Any]:
    """The rows one of the sweeper's guarded UPDATEs changed, executed as plain SQL: the
    ORM's bulk-update path cost most of an idle pass, every second, to return no row."""
    connection = await session.connection()
    return list((await connection.execute(statement, parameters)).all())


async def _expire(
    session: AsyncSession,
    statement: Any,
    cutoff: datetime,
    reason: str,
    now: datetime,
    **more: datetime,
) -> int:
    parameters = {"cutoff": cutoff, "reason": reason, "now": now, **more}
    expired = await _sweep(session, statement, parameters)
    for run in expired:
        emit_run(session, run)
    return len(expired)


async def expire_overdue(
    session: AsyncSession,
    now: datetime,
    *,
    queued_before: datetime,
    started_before: datetime,
    offered_before: datetime,
    silent_before: datetime | None,
    silent_since: datetime | None = None,
) -> int:
    """The sweeper's pass: QUEUE_TIMEOUT, RUN_TIMEOUT, WITHDRAW of offers never confirmed
    and, when `silent_before` is given, MACHINE_LOST: of every running run, or with
    `silent_since` only of runs on machines last seen from then on. Returns how many runs
    ended."""
    ended = await _expire(session, sql.QUEUED_TOO_LONG, queued_before, QUEUE_TIMEOUT, now)
    ended += await _expire(session, sql.RUNNING_TOO_LONG, started_before, RUN_TIMEOUT, now)
    stale = await _sweep(session, sql.WITHDRAW_STALE_OFFERS, {"cutoff": offered_before})
    for run in stale:
        emit_run(session, run, EventKind.RUN_QUEUED)
    if silent_before is not None and silent_since is not None:
        ended += await _expire(
            session, sql.MACHINE_LOST_SINCE, silent_before, MACHINE_LOST, now, since=silent_since
        )
    elif silent_before is not None:
        ended += await _expire(session, sql.MACHINE_LOST, silent_before, MACHINE_LOST, now)
    return ended


async def cancel_queued_runs(
    session: AsyncSession, group_id: str, reason: str, now: datetime
) -> None:
    """GROUP_DELETED: cancel every run waiting in a group's queue, with the reason."""
    for run in await session.scalars(sql.QUEUED_IN_GROUP, {"group_id": group_id}):
        apply(run, RunEvent.GROUP_DELETED, reason, now)
        emit_run(session, run)


async def release_machine_runs(session: AsyncSession, machine_id: str, now: datetime) -> None:
    """MACHINE_DELETED: its held run fails and runs aimed at it are cancelled."""
    for run in await session.scalars(sql.ACTIVE_ON_MACHINE, {"machine_id": machine_id}):
        apply(run, RunEvent.MACHINE_DELETED, MACHINE_DELETED, now)
        emit_run(session, run)
    await session.execute(sql.FORGET_HOLDER, {"gone_id": machine_id})
    await session.execute(sql.FORGET_TARGET, {"gone_id": machine_id})
