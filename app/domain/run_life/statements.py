"""Every statement that changes a run's status, side by side (procrastinate's queries.sql).

Each is built once, with bound parameters, so SQLAlchemy compiles it once; the busy ones
(claim, offer, confirm, complete) are column-position UPDATE ... RETURNING statements.
Their WHERE and their new status come from the transition table (`_in`, `_to`), so a
statement cannot move a run along a path the table does not have.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BindParameter,
    ColumnElement,
    Select,
    and_,
    bindparam,
    exists,
    func,
    literal,
    or_,
    select,
    union_all,
    update,
)
from sqlmodel import col

from app.db.models import Machine, MachineGroup, Run
from app.domain.enums import RunStatus
from app.domain.queue import DISPATCH_ORDER
from app.domain.run_life.transitions import RunEvent, RunState, sources, target

QUEUED, RUNNING = RunStatus.QUEUED.value, RunStatus.RUNNING.value


def state_is(state: RunState, runs: Any = Run) -> ColumnElement[bool]:
    """SQL: the run (of the runs table, or an alias of it) is in `state`."""
    status = col(runs.status) == state.status.value
    if state is RunState.OFFERED:
        return and_(status, col(runs.confirmed_at).is_(None))
    if state is RunState.RUNNING:
        return and_(status, col(runs.confirmed_at).is_not(None))
    return status


def _in(event: RunEvent) -> ColumnElement[bool]:
    """SQL: the run is in a state `event` applies to (held runs as one test when both
    kinds of held run qualify)."""
    states = sources(event)
    if {RunState.OFFERED, RunState.RUNNING} <= states:
        held = col(Run.status) == RUNNING
        rest = [state_is(state) for state in states - {RunState.OFFERED, RunState.RUNNING}]
        return or_(held, *rest) if rest else held
    parts = [state_is(state) for state in sorted(states, key=lambda state: state.value)]
    return parts[0] if len(parts) == 1 else or_(*parts)


def _to(event: RunEvent) -> str:
    """The status `event` sets (the API's: an offered run shows RUNNING)."""
    return target(event).status.value


# -- starting a run -------------------------------------------------------------------


def _load_statement(model: type[MachineGroup] | type[Machine]) -> Select[Any]:
    target_id: BindParameter[str] = bindparam("target_id")
    waiting_in = col(Run.group_id) if model is MachineGroup else col(Run.target_machine_id)
    queued = select(func.count()).where(waiting_in == target_id, state_is(RunState.QUEUED))
    machines = (
        select(func.count()).where(col(Machine.group_id) == target_id).scalar_subquery()
        if model is MachineGroup
        else literal(1)
    )
    return select(machines, queued.scalar_subquery())


# (machines that can serve it, runs waiting) of a group's or a machine's queue.
LOAD = {model: _load_statement(model) for model in (MachineGroup, Machine)}


# -- handing a run to a machine: CLAIM (over HTTP) and OFFER (on the channel) ----------


def _next_in(queue: Any, queue_id: Any, event: RunEvent) -> Any:
    """The first run of one queue that `event` may hand over, in dispatch order: the head
    of its dispatch index (ix_runs_group_dispatch, ix_runs_target_dispatch), one row read.

    Locked with SKIP LOCKED on PostgreSQL, so concurrent claimers take different runs; on
    SQLite the write transaction (BEGIN IMMEDIATE) serialises them.
    """
    return (
        select(col(Run.id), col(Run.priority), col(Run.enqueued_at))
        .where(queue == queue_id, _in(event))
        .order_by(*DISPATCH_ORDER)
        .limit(1)
        .with_for_update(skip_locked=True)
        .correlate(None)
        .subquery()
    )


def _handing_over(event: RunEvent) -> Any:
    """Hand the machine's next queued run to it, in one statement (procrastinate's shape).

    The run is taken only if the machine holds none (offered or running) and its group is
    not in maintenance, read from the machine's current row. The candidate is the better
    of two heads, its group's queue's and its own (runs aimed at it before it joined a
    group), each read from its queue's dispatch index: one condition on either column
    (`group_id = ? OR target_machine_id = ?`) was planned on the status index and read
    and sorted every queued run of every queue. On PostgreSQL the two heads are locked
    (SKIP LOCKED) until the claim commits, the one not taken included: a concurrent
    claimer of the same queue then takes the run behind it, as it would behind a run
    being claimed. The partial unique index on RUNNING runs per machine (migration 0003)
    is the last word if one machine claims twice at once. An OFFER also needs the
    machine's channel to be the one offering (`channel_id`): a channel another took over
    offers nothing.
    """
    machine_id: BindParameter[str] = bindparam("machine_id")
    group_id = select(col(Machine.group_id)).where(col(Machine.id) == machine_id).scalar_subquery()
    heads = union_all(
        *(
            select(head.c.id, head.c.priority, head.c.enqueued_at)
            for head in (
                _next_in(col(Run.group_id), group_id, event),
                _next_in(col(Run.target_machine_id), machine_id, event),
            )
        )
    ).subquery()
    # Subqueries on runs are not correlated with the UPDATE's own row.
    candidate = (
        select(heads.c.id)
        .order_by(heads.c.priority.desc(), heads.c.enqueued_at, heads.c.id)
        .limit(1)
        .scalar_subquery()
    )
    holds_a_run = (
        select(col(Run.id))
        .where(col(Run.machine_id) == machine_id, col(Run.status) == RUNNING)
        .correlate(None)
        .exists()
    )
    in_maintenance = (
        select(col(MachineGroup.id))
        .where(col(MachineGroup.id) == group_id, col(MachineGroup.maintenance))
        .exists()
    )
    conditions = [col(Run.id) == candidate, ~holds_a_run, ~in_maintenance]
    confirmed: Any = bindparam("now")
    if event is RunEvent.OFFER:
        confirmed = None
        conditions.append(
            exists().where(
                col(Machine.id) == machine_id,
                col(Machine.channel_id) == bindparam("channel_id"),
            )
        )
    return (
        update(Run)
        .where(*conditions)
        .values(
            status=_to(event),
            machine_id=machine_id,
            started_at=bindparam("now"),
            confirmed_at=confirmed,
        )
        .returning(Run)
        .execution_options(synchronize_session=False)
    )


CLAIM = _handing_over(RunEvent.CLAIM)
OFFER = _handing_over(RunEvent.OFFER)


def _outlook_query() -> Any:
    """One read of whether a machine could take a run now: its group, whether it holds a
    run, whether its group is in maintenance, and whether its queues hold queued runs."""
    machine_id: BindParameter[str] = bindparam("machine_id")
    queued = state_is(RunState.QUEUED)
    return select(
        col(Machine.group_id),
        select(col(Run.id))
        .where(col(Run.machine_id) == machine_id, col(Run.status) == RUNNING)
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


OUTLOOK = _outlook_query()

# -- the holder's answers: CONFIRM an offer, SUCCEED or FAIL --------------------------

CONFIRM = (
    update(Run)
    .where(
        col(Run.id) == bindparam("run_id"),
        col(Run.machine_id) == bindparam("holder_id"),
        _in(RunEvent.CONFIRM),
    )
    .values(status=_to(RunEvent.CONFIRM), confirmed_at=bindparam("now"))
    .returning(Run)
    .execution_options(synchronize_session=False)
)

assert sources(RunEvent.SUCCEED) == sources(RunEvent.FAIL)
COMPLETE = (
    update(Run)
    .where(
        col(Run.id) == bindparam("run_id"),
        col(Run.machine_id) == bindparam("holder_id"),
        _in(RunEvent.SUCCEED),
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

# -- offers that were never confirmed go back to the queue (WITHDRAW) -----------------


def _withdraw(which: ColumnElement[bool]) -> Any:
    """Back to the queue, at its old place (its enqueue time and priority are kept)."""
    return (
        update(Run)
        .where(which, _in(RunEvent.WITHDRAW))
        .values(status=_to(RunEvent.WITHDRAW), machine_id=None, started_at=None)
        .returning(Run)
        .execution_options(synchronize_session=False)
    )


# The offers held by one machine: its channel closed, or a new one opened.
WITHDRAW_OFFERS_OF = _withdraw(col(Run.machine_id) == bindparam("holder_id"))
# Offers older than the cutoff, whatever their machine (the sweeper).
WITHDRAW_STALE_OFFERS = _withdraw(col(Run.started_at) < bindparam("cutoff"))

# -- the sweeper's expiries -----------------------------------------------------------


def _expiry(overdue: ColumnElement[bool], event: RunEvent) -> Any:
    """End the runs `event` applies to that are `overdue` (bound parameters: `cutoff`,
    `now`, `reason`)."""
    return (
        update(Run)
        .where(overdue, _in(event))
        .values(status=_to(event), failure_reason=bindparam("reason"), finished_at=bindparam("now"))
        .returning(Run)
        .execution_options(synchronize_session=False)
    )


_CUTOFF: BindParameter[datetime] = bindparam("cutoff")
QUEUED_TOO_LONG = _expiry(col(Run.enqueued_at) < _CUTOFF, RunEvent.QUEUE_TIMEOUT)
RUNNING_TOO_LONG = _expiry(col(Run.started_at) < _CUTOFF, RunEvent.RUN_TIMEOUT)
# Each running run looks up its own machine: `IN (machines not seen since the cutoff)`
# listed every such machine, every second, though few or none of them run anything.
MACHINE_LOST = _expiry(
    exists().where(
        col(Machine.id) == col(Run.machine_id),
        (col(Machine.last_seen_at) < _CUTOFF) | col(Machine.last_seen_at).is_(None),
    ),
    RunEvent.MACHINE_LOST,
)
# After the first pass, only machines whose heartbeat expired since (`since`..`cutoff`, a
# range of ix_machines_last_seen_at) can newly be lost: their running runs are found on
# ix_runs_machine_status, where MACHINE_LOST read every running run each second.
MACHINE_LOST_SINCE = _expiry(
    col(Run.machine_id).in_(
        select(col(Machine.id)).where(
            col(Machine.last_seen_at) >= bindparam("since"), col(Machine.last_seen_at) < _CUTOFF
        )
    ),
    RunEvent.MACHINE_LOST,
)

# -- runs whose group or machine goes away (read, then moved one by one by `apply`) ----

QUEUED_IN_GROUP = select(Run).where(
    col(Run.group_id) == bindparam("group_id"), state_is(RunState.QUEUED)
)
ACTIVE_ON_MACHINE = select(Run).where(
    or_(
        col(Run.machine_id) == bindparam("machine_id"),
        col(Run.target_machine_id) == bindparam("machine_id"),
    ),
    col(Run.status).in_([QUEUED, RUNNING]),
)
FORGET_HOLDER = (
    update(Run)
    .where(col(Run.machine_id) == bindparam("gone_id"))
    .values(machine_id=None)
    .execution_options(synchronize_session=False)
)
FORGET_TARGET = (
    update(Run)
    .where(col(Run.target_machine_id) == bindparam("gone_id"))
    .values(target_machine_id=None)
    .execution_options(synchronize_session=False)
)
