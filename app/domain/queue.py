"""The run queues of groups and machines: dispatch order, positions and start estimates.

Positions, estimates and queues are read for many runs or groups at once, each in a fixed
number of statements whatever their number: the API asks for them for a whole list of
runs through its DataLoaders (app/graphql/loaders.py).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any, cast

from sqlalchemy import (
    BindParameter,
    ColumnElement,
    Select,
    bindparam,
    exists,
    func,
    literal,
    select,
    union_all,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased
from sqlmodel import col

from app.db.models import Machine, MachineGroup, Run
from app.domain.clock import as_utc
from app.domain.enums import RunPriority, RunStatus
from app.domain.status import seen_online

PRIORITY_RANK = {RunPriority.LOW: 0, RunPriority.NORMAL: 1, RunPriority.HIGH: 2}
PRIORITY_OF_RANK = {rank: priority for priority, rank in PRIORITY_RANK.items()}
DISPATCH_ORDER = (col(Run.priority).desc(), col(Run.enqueued_at), col(Run.id))
ESTIMATE_SAMPLE = 20  # finished runs an estimate averages, the queue's newest
QUEUED, RUNNING = RunStatus.QUEUED.value, RunStatus.RUNNING.value


@dataclass(frozen=True, eq=False)
class QueueKind:
    """Runs wait in a group's queue, or in one machine's for a machine connection."""

    name: str
    record: type[MachineGroup] | type[Machine]
    column_name: str  # the runs' column naming the queue

    def column(self, runs: Any = Run) -> Any:
        """The column naming the queue, of the runs table or an alias of it."""
        return getattr(runs, self.column_name)

    def machines(self) -> ColumnElement[int]:
        """How many machines serve a queue, for each row of its record table."""
        if self.record is Machine:
            return literal(1)
        return (
            select(func.count())
            .where(col(Machine.group_id) == col(MachineGroup.id))
            .correlate(MachineGroup)
            .scalar_subquery()
        )


GROUP_QUEUE = QueueKind("group", MachineGroup, "group_id")
MACHINE_QUEUE = QueueKind("machine", Machine, "target_machine_id")
KINDS = {kind.name: kind for kind in (GROUP_QUEUE, MACHINE_QUEUE)}
Queue = tuple[QueueKind, str]


def queue_of(run: Run) -> Queue | None:
    """The queue a run waits (or waited) in."""
    if run.group_id is not None:
        return GROUP_QUEUE, run.group_id
    if run.target_machine_id is not None:
        return MACHINE_QUEUE, run.target_machine_id
    return None


def _by_kind(queues: Iterable[Queue]) -> dict[QueueKind, list[str]]:
    ids: defaultdict[QueueKind, set[str]] = defaultdict(set)
    for kind, queue_id in queues:
        ids[kind].add(queue_id)
    return {kind: sorted(found) for kind, found in ids.items()}


def _union(parts: Sequence[Any]) -> Any:
    """One statement for the queues of every kind asked about."""
    return parts[0] if len(parts) == 1 else union_all(*parts)


async def queued_runs_of(
    session: AsyncSession, group_ids: Sequence[str], first: int
) -> list[list[Run]]:
    """The first `first` queued runs of each group, in dispatch order: HIGH, NORMAL, LOW,
    then first in first out (so the nth is at position n). One statement for all."""
    runs: defaultdict[str | None, list[Run]] = defaultdict(list)
    parameters = {"group_ids": list(group_ids), "first": first}
    for run in await session.scalars(_QUEUED_PAGE, parameters):
        runs[run.group_id].append(run)
    return [runs.get(group_id, []) for group_id in group_ids]


# The queue reads run on every queue page and every list of queued runs: each statement
# is built once (per kinds of queue asked about), with its values bound at execution;
# building them cost more than SQLite's work.
def _queued_page_statement() -> Select[Run]:
    place = func.row_number().over(partition_by=col(Run.group_id), order_by=DISPATCH_ORDER)
    ranked = (
        select(Run, place.label("place"))
        .where(
            col(Run.group_id).in_(bindparam("group_ids", expanding=True)), col(Run.status) == QUEUED
        )
        .subquery()
    )
    return (
        select(aliased(Run, ranked))
        .where(ranked.c.place <= bindparam("first"))
        .order_by(ranked.c.place)
    )


_QUEUED_PAGE = _queued_page_statement()


def _queued_page(group_ids: Sequence[str], first: int) -> Select[Run]:
    """The statement of `queued_runs_of`, its values bound (for a plan)."""
    return _QUEUED_PAGE.params(group_ids=list(group_ids), first=first)


async def queue_positions(session: AsyncSession, runs: Sequence[Run]) -> list[int | None]:
    """1-based place of each queued run in its queue; None once it left the queue.

    One statement: every queued run of the queues involved is ranked in dispatch order (a
    queue holds at most MG_MAX_QUEUED_RUNS), and the ranks of the runs asked about kept.
    """
    queued = {run.id: queue for run in runs if run.status == QUEUED and (queue := queue_of(run))}
    if not queued:
        return [None] * len(runs)
    statement, parameters = _by_kinds(_positions_statement, queued.values())
    rows = await session.execute(statement, {**parameters, "run_ids": list(queued)})
    positions: dict[str, int] = {run_id: position for run_id, position in rows}
    return [positions.get(run.id) if run.id in queued else None for run in runs]


def _by_kinds(
    build: Callable[[tuple[QueueKind, ...]], Any], queues: Iterable[Queue]
) -> tuple[Any, dict[str, list[str]]]:
    """The statement `build` makes for the kinds of `queues`, and the ids of each kind as
    its parameters (`group_ids`, `machine_ids`)."""
    ids = _by_kind(queues)
    kinds = tuple(kind for kind in (GROUP_QUEUE, MACHINE_QUEUE) if kind in ids)
    return build(kinds), {_ids(kind): ids[kind] for kind in kinds}


def _ids(kind: QueueKind) -> str:
    return f"{kind.name}_ids"


def _queue_in(kind: QueueKind, column: Any) -> ColumnElement[bool]:
    """`column` names one of the queues of `kind` asked about."""
    return cast(ColumnElement[bool], column.in_(bindparam(_ids(kind), expanding=True)))


@lru_cache(maxsize=4)
def _positions_statement(kinds: tuple[QueueKind, ...]) -> Any:
    parts = [
        select(
            col(Run.id).label("run_id"),
            func.row_number()
            .over(partition_by=kind.column(), order_by=DISPATCH_ORDER)
            .label("position"),
        ).where(_queue_in(kind, kind.column()), col(Run.status) == QUEUED)
        for kind in kinds
    ]
    ranked = _union(parts).subquery()
    return select(ranked.c.run_id, ranked.c.position).where(
        ranked.c.run_id.in_(bindparam("run_ids", expanding=True))
    )


def _positions(queues: Iterable[Queue], run_ids: Sequence[str]) -> Any:
    """The statement of `queue_positions`, its values bound (for a plan)."""
    statement, parameters = _by_kinds(_positions_statement, queues)
    return statement.params(**parameters, run_ids=list(run_ids))


@dataclass(frozen=True)
class QueueCounts:
    """A group's queue and machines at one moment."""

    queued: int
    running: int
    machines: int
    online: int
    idle: int


def _count_in(status: RunStatus) -> Any:
    """How many runs of the group's queue are in `status` (an index search per count)."""
    return (
        select(func.count())
        .where(col(Run.group_id) == col(MachineGroup.id), col(Run.status) == status.value)
        .scalar_subquery()
    )


# One statement, so one snapshot: read as three, on PostgreSQL (each statement its own
# snapshot under READ COMMITTED) a run claimed between them was counted running in one
# and its machine idle in the other.
_QUEUE_COUNTS = (
    select(
        _count_in(RunStatus.QUEUED).label("queued"),
        _count_in(RunStatus.RUNNING).label("running"),
        col(Machine.id),
        col(Machine.last_seen_at),
        col(Machine.left_at),
        exists()
        .where(col(Run.machine_id) == col(Machine.id), col(Run.status) == RunStatus.RUNNING.value)
        .label("busy"),
    )
    .select_from(MachineGroup)
    .outerjoin(Machine, col(Machine.group_id) == col(MachineGroup.id))
    .where(col(MachineGroup.id) == bindparam("group_id"))
)


async def queue_counts(
    session: AsyncSession, group: MachineGroup, now: datetime, timeout_seconds: int
) -> QueueCounts:
    """Counts for `queueStatus`: one statement whatever the group's size."""
    rows = list(await session.execute(_QUEUE_COUNTS, {"group_id": group.id}))
    machines = [row for row in rows if row.id is not None]
    online = [
        row for row in machines if seen_online(row.last_seen_at, row.left_at, now, timeout_seconds)
    ]
    idle = [] if group.maintenance else [row for row in online if not row.busy]
    return QueueCounts(
        queued=rows[0].queued if rows else 0,
        running=rows[0].running if rows else 0,
        machines=len(machines),
        online=len(online),
        idle=len(idle),
    )


async def estimated_starts(
    session: AsyncSession, runs: Sequence[Run], positions: Sequence[int | None], now: datetime
) -> list[datetime | None]:
    """When each queued run should start, from its queue's recent run durations.

    The average of the last ESTIMATE_SAMPLE finished runs of the run's queue, times the
    waves of work ahead of it (its position and the running runs) across the queue's
    machines; None without history or machines. Two statements for all the queues.
    """
    waiting = {
        queue
        for run, place in zip(runs, positions, strict=True)
        if place is not None and (queue := queue_of(run))
    }
    if not waiting:
        return [None] * len(runs)
    averages = await _average_durations(session, waiting)
    loads = await _loads(session, waiting)
    estimates: list[datetime | None] = []
    for run, position in zip(runs, positions, strict=True):
        queue = queue_of(run)
        average = averages.get(queue) if position is not None and queue else None
        machines, running = loads.get(queue, (0, 0)) if queue else (0, 0)
        if position is None or average is None or not machines:
            estimates.append(None)
            continue
        waves = (position - 1 + running) // machines
        estimates.append(now + timedelta(seconds=waves * average))
    return estimates


def _recent_finished(queues: Iterable[Queue]) -> Any:
    """The newest finished runs of each queue: (kind, queue, started_at, finished_at),
    ESTIMATE_SAMPLE of each at most, its values bound."""
    statement, parameters = _recent_finished_of(queues)
    return statement.params(**parameters)


def _recent_finished_of(queues: Iterable[Queue]) -> tuple[Any, dict[str, str]]:
    """The statement of `_recent_finished` for these queues, and its parameters."""
    ids = _by_kind(queues)
    shape = tuple(len(ids.get(kind, ())) for kind in (GROUP_QUEUE, MACHINE_QUEUE))
    parameters = {
        f"{kind.name}{number}": queue_id
        for kind in (GROUP_QUEUE, MACHINE_QUEUE)
        for number, queue_id in enumerate(ids.get(kind, ()))
    }
    return _recent_finished_statement(shape), parameters


@lru_cache(maxsize=64)
def _recent_finished_statement(shape: tuple[int, int]) -> Any:
    """One part per queue (`shape`: how many groups, how many machines), each the
    newest ESTIMATE_SAMPLE finished runs of that queue, read from the newest end of its
    (queue, finished_at, started_at) index (migration 0006): the history of a busy queue
    is never read in full. A part per queue, with the queue's id bound, rather than one
    correlated subquery for all: PostgreSQL then plans each on the queue's own
    statistics, and walks the index; for "some group", it expected a few runs and read
    them all to sort them, a busy group's whole history.
    """
    parts = []
    for kind, count in zip((GROUP_QUEUE, MACHINE_QUEUE), shape, strict=True):
        for number in range(count):
            queue_id: BindParameter[str] = bindparam(f"{kind.name}{number}")
            newest = (
                select(
                    col(Run.started_at).label("started_at"),
                    col(Run.finished_at).label("finished_at"),
                )
                .where(
                    kind.column() == queue_id,
                    col(Run.started_at).is_not(None),
                    col(Run.finished_at).is_not(None),
                )
                .order_by(col(Run.finished_at).desc())
                .limit(ESTIMATE_SAMPLE)
                .subquery()
            )
            parts.append(
                select(literal(kind.name), queue_id, newest.c.started_at, newest.c.finished_at)
            )
    return _union(parts)


async def _average_durations(session: AsyncSession, queues: Iterable[Queue]) -> dict[Queue, float]:
    """The average duration in seconds of each queue's last finished runs (absent: none)."""
    finished: defaultdict[Queue, list[tuple[datetime, datetime]]] = defaultdict(list)
    statement, parameters = _recent_finished_of(queues)
    for kind_name, queue_id, started, ended in await session.execute(statement, parameters):
        finished[KINDS[kind_name], queue_id].append((as_utc(started), as_utc(ended)))
    return {
        queue: sum((end - start).total_seconds() for start, end in spans) / len(spans)
        for queue, spans in finished.items()
    }


@lru_cache(maxsize=4)
def _loads_statement(kinds: tuple[QueueKind, ...]) -> Any:
    """(kind, queue, machines serving it, runs running in it) of each queue."""
    parts = []
    for kind in kinds:
        record = kind.record
        running = (
            select(func.count())
            .where(kind.column() == col(record.id), col(Run.status) == RUNNING)
            .correlate(record)
            .scalar_subquery()
        )
        parts.append(
            select(literal(kind.name), col(record.id), kind.machines(), running).where(
                _queue_in(kind, col(record.id))
            )
        )
    return _union(parts)


def _loads_of(queues: Iterable[Queue]) -> Any:
    """The statement of `_loads`, its values bound (for a plan)."""
    statement, parameters = _by_kinds(_loads_statement, queues)
    return statement.params(**parameters)


async def _loads(session: AsyncSession, queues: Iterable[Queue]) -> dict[Queue, tuple[int, int]]:
    """(machines serving it, runs running in it) of each queue, in one statement."""
    statement, parameters = _by_kinds(_loads_statement, queues)
    return {
        (KINDS[kind_name], queue_id): (int(machines), int(running))
        for kind_name, queue_id, machines, running in await session.execute(statement, parameters)
    }
