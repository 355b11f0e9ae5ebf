"""The run queues of groups and machines: dispatch order, positions and start estimates.

Positions, estimates and queues are read for many runs or groups at once, each in a fixed
number of statements whatever their number: the API asks for them for a whole list of
runs through its DataLoaders (app/graphql/loaders.py).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Select, func, literal, select, union_all
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
    then first in first out. One statement for all the groups."""
    runs: defaultdict[str | None, list[Run]] = defaultdict(list)
    for run in await session.scalars(_queued_page(group_ids, first)):
        runs[run.group_id].append(run)
    return [runs.get(group_id, []) for group_id in group_ids]


def _queued_page(group_ids: Sequence[str], first: int) -> Select[Run]:
    place = func.row_number().over(partition_by=col(Run.group_id), order_by=DISPATCH_ORDER)
    ranked = (
        select(Run, place.label("place"))
        .where(col(Run.group_id).in_(group_ids), col(Run.status) == QUEUED)
        .subquery()
    )
    return select(aliased(Run, ranked)).where(ranked.c.place <= first).order_by(ranked.c.place)


async def queue_positions(session: AsyncSession, runs: Sequence[Run]) -> list[int | None]:
    """1-based place of each queued run in its queue; None once it left the queue.

    One statement: every queued run of the queues involved is ranked in dispatch order (a
    queue holds at most MG_MAX_QUEUED_RUNS), and the ranks of the runs asked about kept.
    """
    queued = {run.id: queue for run in runs if run.status == QUEUED and (queue := queue_of(run))}
    if not queued:
        return [None] * len(runs)
    rows = await session.execute(_positions(queued.values(), list(queued)))
    positions: dict[str, int] = {run_id: position for run_id, position in rows}
    return [positions.get(run.id) if run.id in queued else None for run in runs]


def _positions(queues: Iterable[Queue], run_ids: Sequence[str]) -> Any:
    parts = [
        select(
            col(Run.id).label("run_id"),
            func.row_number()
            .over(partition_by=kind.column(), order_by=DISPATCH_ORDER)
            .label("position"),
        ).where(kind.column().in_(ids), col(Run.status) == QUEUED)
        for kind, ids in _by_kind(queues).items()
    ]
    ranked = _union(parts).subquery()
    return select(ranked.c.run_id, ranked.c.position).where(ranked.c.run_id.in_(run_ids))


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
    machines = list(
        await session.execute(
            select(col(Machine.id), col(Machine.last_seen_at), col(Machine.left_at)).where(
                col(Machine.group_id) == group.id
            )
        )
    )
    busy = set(
        await session.scalars(
            select(col(Run.machine_id)).where(
                col(Run.machine_id).in_([machine_id for machine_id, _seen, _left in machines]),
                col(Run.status) == RunStatus.RUNNING.value,
            )
        )
    )
    online = [m for m, seen, left in machines if seen_online(seen, left, now, timeout_seconds)]
    idle = [] if group.maintenance else [m for m in online if m not in busy]
    return QueueCounts(
        queued=runs.get(RunStatus.QUEUED.value, 0),
        running=runs.get(RunStatus.RUNNING.value, 0),
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
    """The newest finished runs of each queue: (kind, queue, started_at, finished_at).

    SQLite has no LATERAL join, so "the newest ESTIMATE_SAMPLE per queue" is the runs
    finished since the oldest of them, found per queue by a correlated subquery that walks
    the queue's (queue, finished_at, started_at) index from its newest end (migration
    0005): the history of a busy queue is never read in full. Ties at that oldest moment
    can add a few rows; the caller keeps ESTIMATE_SAMPLE.
    """
    parts = []
    for kind, ids in _by_kind(queues).items():
        record, newest = kind.record, aliased(Run)
        sample = (
            select(col(newest.finished_at).label("finished_at"))
            .where(
                kind.column(newest) == col(record.id),
                col(newest.started_at).is_not(None),
                col(newest.finished_at).is_not(None),
            )
            .correlate(record)
            .order_by(col(newest.finished_at).desc())
            .limit(ESTIMATE_SAMPLE)
            .subquery()
        )
        oldest_in_sample = select(func.min(sample.c.finished_at)).scalar_subquery()
        parts.append(
            select(literal(kind.name), col(record.id), col(Run.started_at), col(Run.finished_at))
            .join(Run, kind.column() == col(record.id))
            .where(
                col(record.id).in_(ids),
                col(Run.started_at).is_not(None),
                col(Run.finished_at) >= oldest_in_sample,
            )
        )
    return _union(parts)


async def _average_durations(session: AsyncSession, queues: Iterable[Queue]) -> dict[Queue, float]:
    """The average duration in seconds of each queue's last finished runs (absent: none)."""
    finished: defaultdict[Queue, list[tuple[datetime, datetime]]] = defaultdict(list)
    for kind_name, queue_id, started, ended in await session.execute(_recent_finished(queues)):
        finished[KINDS[kind_name], queue_id].append((as_utc(started), as_utc(ended)))
    averages = {}
    for queue, spans in finished.items():
        recent = sorted(spans, key=lambda span: span[1], reverse=True)[:ESTIMATE_SAMPLE]
        averages[queue] = sum((end - start).total_seconds() for start, end in recent) / len(recent)
    return averages


def _loads_of(queues: Iterable[Queue]) -> Any:
    """(kind, queue, machines serving it, runs running in it) of each queue."""
    parts = []
    for kind, ids in _by_kind(queues).items():
        record = kind.record
        running = (
            select(func.count())
            .where(kind.column() == col(record.id), col(Run.status) == RUNNING)
            .correlate(record)
            .scalar_subquery()
        )
        parts.append(
            select(literal(kind.name), col(record.id), kind.machines(), running).where(
                col(record.id).in_(ids)
            )
        )
    return _union(parts)


async def _loads(session: AsyncSession, queues: Iterable[Queue]) -> dict[Queue, tuple[int, int]]:
    """(machines serving it, runs running in it) of each queue, in one statement."""
    return {
        (KINDS[kind_name], queue_id): (int(machines), int(running))
        for kind_name, queue_id, machines, running in await session.execute(_loads_of(queues))
    }
