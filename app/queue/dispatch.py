"""Dispatch: a machine's agent claims the next run atomically and reports its end."""

from __future__ import annotations

import asyncio
import math
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import BindParameter, bindparam, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from app.db.models import Machine, MachineGroup, Run
from app.deadline import waiting
from app.domain.enums import ErrorCode, RunStatus
from app.domain.errors import DomainError, not_found
from app.domain.lifecycle import already_ended, emit_run
from app.domain.queue import DISPATCH_ORDER
from app.domain.runs import check_json_size
from app.queue.events import Event, EventKind, group_topic, machine_topic
from app.state import AppState

MAX_WAIT_SECONDS = 60
# How often a long-polling claim checks that its agent is still connected.
AGENT_CHECK_SECONDS = 0.5
# Events that can make work claimable for a waiting machine.
WAKING = frozenset(
    {
        EventKind.RUN_QUEUED,
        EventKind.RUN_CHANGED,
        EventKind.GROUP_CHANGED,
        EventKind.MACHINES_CHANGED,
        EventKind.RESYNC,  # events may have been missed: look again
    }
)


def _queue_of(machine: Machine) -> Any:
    """The queues a machine serves: its group's, and runs aimed at it directly."""
    own = col(Run.target_machine_id) == machine.id
    return or_(col(Run.group_id) == machine.group_id, own) if machine.group_id else own


def _claim_statement() -> Any:
    """Hand the machine's next queued run to it, in one statement (procrastinate's shape).

    The run is taken only if the machine holds none and its group is not in maintenance,
    read from the machine's current row. On PostgreSQL the candidate is locked with SKIP
    LOCKED so concurrent claimers take different runs; on SQLite the write transaction
    (BEGIN IMMEDIATE) serialises them. The partial unique index on RUNNING runs per
    machine (migration 0003) is the last word if one machine claims twice at once.
    """
    machine_id: BindParameter[str] = bindparam("machine_id")
    group_id = select(col(Machine.group_id)).where(col(Machine.id) == machine_id).scalar_subquery()
    queued_for_machine = or_(
        col(Run.group_id) == group_id, col(Run.target_machine_id) == machine_id
    )
    # Subqueries on runs are not correlated with the UPDATE's own row.
    candidate = (
        select(col(Run.id))
        .where(queued_for_machine, col(Run.status) == RunStatus.QUEUED.value)
        .order_by(*DISPATCH_ORDER)
        .limit(1)
        .with_for_update(skip_locked=True)
        .correlate(None)
        .scalar_subquery()
    )
    holds_a_run = (
        select(col(Run.id))
        .where(col(Run.machine_id) == machine_id, col(Run.status) == RunStatus.RUNNING.value)
        .correlate(None)
        .exists()
    )
    in_maintenance = (
        select(col(MachineGroup.id))
        .where(col(MachineGroup.id) == group_id, col(MachineGroup.maintenance))
        .exists()
    )
    return (
        update(Run)
        .where(col(Run.id) == candidate, ~holds_a_run, ~in_maintenance)
        .values(
            status=RunStatus.RUNNING.value,
            machine_id=machine_id,
            started_at=bindparam("now"),
        )
        .returning(Run)
        .execution_options(synchronize_session=False)
    )


_CLAIM = _claim_statement()


async def claim(session: AsyncSession, machine_id: str, now: datetime) -> Run | None:
    """Give the machine its next run, if it is idle and not in maintenance (one statement
    in the caller's write transaction)."""
    run = (await session.scalars(_CLAIM, {"machine_id": machine_id, "now": now})).one_or_none()
    if run is not None:
        emit_run(session, run)
    return run


def _outlook_query() -> Any:
    """One read of whether a machine could claim now: its group, whether it holds a run,
    whether its group is in maintenance, and whether its queues hold queued runs.

    Built once with a bound parameter, so SQLAlchemy compiles it once.
    """
    machine_id: BindParameter[str] = bindparam("machine_id")
    queued = col(Run.status) == RunStatus.QUEUED.value
    return select(
        col(Machine.group_id),
        select(col(Run.id))
        .where(col(Run.machine_id) == machine_id, col(Run.status) == RunStatus.RUNNING.value)
        .exists()
        .label("busy"),
        select(col(MachineGroup.maintenance))
        .where(col(MachineGroup.id) == col(Machine.group_id))
        .scalar_subquery()
        .label("maintenance"),
        select(col(Run.id))
        .where(col(Run.group_id) == col(Machine.group_id), queued)
        .exists()
        .label("group_work"),
        select(col(Run.id))
        .where(col(Run.target_machine_id) == machine_id, queued)
        .exists()
        .label("own_work"),
    ).where(col(Machine.id) == machine_id)


_OUTLOOK = _outlook_query()


@dataclass
class _Queue:
    """What this process knows about one group's queue, shared by the machines waiting on it.

    Claim attempts on one queue take turns (`lock`), so a run queued while many machines
    wait wakes them all but only the first writes: the next ones find the queue empty in
    a read, and once one has, those woken no later skip even that read (`empty_since`).
    Only an optimisation: the claim's write transaction is what guarantees exactly once,
    across processes too.
    """

    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    # loop.time() at which a read that found no queued run in the group began.
    empty_since: float = -math.inf


# Per group id; an entry lives while some claim holds it.
_queues: weakref.WeakValueDictionary[str, _Queue] = weakref.WeakValueDictionary()


def _queue_for(group_id: str) -> _Queue:
    queue = _queues.get(group_id)
    if queue is None:
        queue = _queues[group_id] = _Queue()
    return queue


async def _claim_if_any(state: AppState, machine_id: str) -> tuple[Run | None, str | None]:
    """Claim the machine's next run if a cheap read says it could.

    Returns the run, and the id of the machine's group when that read found nothing
    queued in the group. The write transaction is skipped when the machine holds a run,
    its group is in maintenance, or nothing is queued for it.
    """
    async with state.db.read() as session:
        outlook = (await session.execute(_OUTLOOK, {"machine_id": machine_id})).one_or_none()
    if outlook is None:
        raise not_found("machine")
    empty_group = outlook.group_id if not outlook.group_work else None
    if outlook.busy or outlook.maintenance or not (outlook.group_work or outlook.own_work):
        return None, empty_group
    try:
        async with state.transaction() as session:
            # Take the write lock before reading the clock, so startedAt follows claim order.
            await session.connection()
            return await claim(session, machine_id, state.services.clock.now()), None
    except IntegrityError:
        # The same machine claimed at the same moment through another server: it holds
        # that run, and this claim changed nothing.
        return None, None


def _wakes(machine_id: str, event: Event) -> bool:
    """Whether an event can make work claimable for the machine.

    A run changing elsewhere in the group (claimed, finished, re-prioritised, cancelled)
    frees no work for this machine: only its own runs' changes, new runs, and group or
    machine changes can.
    """
    if event.kind is EventKind.RUN_CHANGED:
        return machine_topic(machine_id) in event.topics
    return event.kind in WAKING


async def claim_next_run(
    state: AppState,
    machine: Machine,
    wait_seconds: int,
    agent_gone: Callable[[], Awaitable[bool]] | None = None,
) -> Run | None:
    """Claim at once, or wait up to `wait_seconds` and claim as soon as work is queued.

    Woken by events on the machine's topics, not by polling the database. Once
    `agent_gone` says the agent hung up, it stops waiting without claiming: a run
    claimed for an agent that is not listening would never start. `machine` is the row
    the request authenticated with: its group says which queue's events to listen to.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + max(0, min(wait_seconds, MAX_WAIT_SECONDS))
    machine_id, group_id = machine.id, machine.group_id
    topics = [machine_topic(machine_id)]
    if group_id:
        topics.append(group_topic(group_id))
    queue = _queue_for(group_id or machine_id)
    own = machine_topic(machine_id)
    async with state.bus.listen(*topics) as inbox:
        woken, only_group_runs, woken_at = True, False, loop.time()
        while True:
            if agent_gone is not None and await agent_gone():
                return None
            if woken:
                async with queue.lock:
                    # Woken only by runs queued in the group, and a look that began after
                    # they were announced found the group's queue empty: they are taken.
                    if not only_group_runs or woken_at >= queue.empty_since:
                        began = loop.time()
                        with state.metrics.claim_latency.time():
                            run, empty_group = await _claim_if_any(state, machine_id)
                        if empty_group is not None and empty_group == group_id:
                            queue.empty_since = max(queue.empty_since, began)
                        if run is not None:
                            return run
            remaining = deadline - loop.time()
            if remaining <= 0:
                return None
            if agent_gone is not None:
                remaining = min(remaining, AGENT_CHECK_SECONDS)
            with waiting():  # not work: outside the request's deadline (MG_REQUEST_TIMEOUT)
                event = await inbox.next(remaining)
            # Every event waiting now is handled by one attempt, not one attempt each.
            events = [event, *inbox.drain()] if event is not None else []
            waking = [e for e in events if _wakes(machine_id, e)]
            woken, woken_at = bool(waking), loop.time()
            only_group_runs = all(
                e.kind is EventKind.RUN_QUEUED and own not in e.topics for e in waking
            )


# Built once, like the claim: every run ends through it.
_COMPLETE = (
    update(Run)
    .where(
        col(Run.id) == bindparam("run_id"),
        col(Run.machine_id) == bindparam("holder_id"),
        col(Run.status) == RunStatus.RUNNING.value,
    )
    .values(
        output=bindparam("new_output"),
        status=bindparam("new_status"),
        failure_reason=bindparam("reason"),
        finished_at=bindparam("now"),
    )
    .returning(Run)
    .execution_options(synchronize_session=False)
)


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
    """End the run the machine holds; anyone else's report changes nothing.

    One UPDATE that matches only a RUNNING run held by this machine; when it matches
    nothing, a read says why.
    """
    try:
        check_json_size(output, "output")
    except DomainError:
        await _why_not_held(session, machine_id, run_id)
        raise
    values = {
        "run_id": run_id,
        "holder_id": machine_id,
        "new_output": output,
        "new_status": (RunStatus.SUCCEEDED if succeeded else RunStatus.FAILED).value,
        "reason": None if succeeded else (message or "the flow failed")[:1000],
        "now": now,
    }
    run = (await session.scalars(_COMPLETE, values)).one_or_none()
    if run is None:
        await _why_not_held(session, machine_id, run_id)
        raise AssertionError("a run this machine holds was not updated")
    emit_run(session, run)
    return run


async def _why_not_held(session: AsyncSession, machine_id: str, run_id: str) -> None:
    """Raise why the machine may not report the run, if it may not (else return)."""
    run = await session.get(Run, run_id)
    if run is None:
        raise not_found("run", "id")
    if run.machine_id != machine_id:
        raise DomainError(ErrorCode.LEASE_LOST, "this machine does not hold the run", "id")
    if run.status != RunStatus.RUNNING.value:
        raise already_ended(run, "this report changes nothing (stop its flow, if it still runs)")
