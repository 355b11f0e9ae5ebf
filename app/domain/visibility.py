"""What a viewer may see, as SQL that lists filter by: the SQL mirror of the rules in
`app/domain/access.py` (a test checks, record kind by record kind, that both agree).

The filters are SQL expressions built for a viewer. Building one, and SQLAlchemy's cache
key for it, cost more than SQLite's own work on a page; the expressions are immutable, so
each is kept for reuse, per viewer and set of administered environments (a change of
roles makes a new key).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, TypeVar, cast

from sqlalchemy import CTE, ColumnElement, Select, false, literal, or_, select, union_all
from sqlalchemy.orm import aliased
from sqlmodel import col

from app.db.hints import unindexed
from app.db.models import Connection, Grant, Machine, MachineGroup, Run
from app.domain.access import Seen
from app.domain.caller import Viewer
from app.domain.counts import bounded, bounded_union
from app.domain.enums import RecordKind

FILTER_CACHE_SIZE = 1024
# A viewer who sees at most this many of a list's records (groups, machines; for runs,
# the groups and machines whose queues they see) is served from their own records rather
# than by a walk of the whole list: see app/domain/pages.py and the README ("Costs as
# data grows"), which says why this number.
OWN_LIMIT = 250
T = TypeVar("T")


@dataclass(frozen=True, eq=False)
class Visible:
    """The rows of one list a viewer may see: the filter of its rows, and a statement
    counting them, at most COUNT_LIMIT + 1 of them (app/domain/counts.py).

    `own`, when set, is the same rows read from the viewer's side, `(id, name_key)`
    (their own records, their grants): a viewer who sees few of the rows is served from
    it (app/domain/pages.py), and `total` then counts from the viewer's side too.
    """

    where: ColumnElement[bool]
    total: Select[Any]
    own: Select[Any] | None = None

    def seen(self, rows: Sequence[T]) -> list[Seen[T]]:
        """Rows read through `where`: seen by the rules `where` mirrors."""
        return [Seen(row) for row in rows]


def _counted(model: type[Any], where: ColumnElement[bool]) -> Visible:
    return Visible(where, select(bounded(model, where)))


def _administered(viewer: Viewer) -> tuple[str, ...]:
    return tuple(sorted(env for env in viewer.roles if viewer.administers(env)))


def _one_of(column: Any, values: tuple[str, ...]) -> ColumnElement[bool]:
    # Not `in_`: its list parameter is spliced into the SQL on every execution, which a
    # filter built once per viewer need not pay.
    return or_(false(), *(column == value for value in values))


# Every filter below decides one row at a time, by probes of the primary keys and of the
# viewer's grants (`ix_grants_user`): a page walks its index in its order and stops once
# full, and a count once it has read COUNT_LIMIT + 1 rows, whatever the number of
# groups, machines and runs. (An `IN (the viewer's groups)` list reads every group the
# viewer sees, and every group of the environments they administer, on every page.)


def _granted(viewer_id: str, kind: RecordKind, record_id: Any) -> ColumnElement[bool]:
    """The viewer holds a grant on the record `record_id` names: one probe per row.

    OFFSET 0 keeps it a probe on PostgreSQL, whose planner may otherwise read all the
    viewer's grants into a hash first ("hashed SubPlan", an EXISTS turned into an IN):
    every grant of a viewer of all, on each page, however few rows the page reads.
    """
    grant = aliased(Grant)
    return (
        select(literal(1))
        .where(
            col(grant.user_id) == viewer_id,
            col(grant.record_kind) == kind.value,
            col(grant.record_id) == record_id,
        )
        .offset(0)
        .exists()
    )


def _sees_group_row(group: Any, viewer_id: str, administered: tuple[str, ...]) -> Any:
    """The viewer sees this row of machine_groups (or of an alias of it)."""
    return or_(
        _one_of(group.environment_id, administered),
        group.owner_id == viewer_id,
        _granted(viewer_id, RecordKind.MACHINE_GROUP, group.id),
    )


def _sees_group(group_id: Any, viewer_id: str, administered: tuple[str, ...]) -> Any:
    """The group that `group_id` names exists and the viewer sees it (a probe: OFFSET 0
    as in `_granted`)."""
    group = aliased(MachineGroup)
    return (
        select(literal(1))
        .where(col(group.id) == group_id, _sees_group_row(group, viewer_id, administered))
        .offset(0)
        .exists()
    )


def _sees_machine_row(machine: Any, viewer_id: str, administered: tuple[str, ...]) -> Any:
    """The viewer sees this row of machines: standalone by its own grants, in a group
    with the group."""
    standalone = col(machine.group_id).is_(None) & or_(
        machine.owner_id == viewer_id,
        _granted(viewer_id, RecordKind.MACHINE, machine.id),
    )
    grouped = col(machine.group_id).is_not(None) & _sees_group(
        machine.group_id, viewer_id, administered
    )
    return or_(_one_of(machine.environment_id, administered), standalone, grouped)


def _sees_machine(machine_id: Any, viewer_id: str, administered: tuple[str, ...]) -> Any:
    """The machine that `machine_id` names exists and the viewer sees it (a probe: OFFSET
    0 as in `_granted`)."""
    machine = aliased(Machine)
    return (
        select(literal(1))
        .where(col(machine.id) == machine_id, _sees_machine_row(machine, viewer_id, administered))
        .offset(0)
        .exists()
    )


def visible_groups_anywhere(viewer: Viewer) -> ColumnElement[bool]:
    """Groups the viewer owns, holds a grant on, or administers, in any environment."""
    return _groups_anywhere(viewer.id, _administered(viewer))


@lru_cache(maxsize=FILTER_CACHE_SIZE)
def _groups_anywhere(viewer_id: str, administered: tuple[str, ...]) -> ColumnElement[bool]:
    return cast(ColumnElement[bool], _sees_group_row(MachineGroup, viewer_id, administered))


def visible_machines_anywhere(viewer: Viewer) -> ColumnElement[bool]:
    """Machines seen directly (standalone) or through a visible group, in any environment."""
    return _machines_anywhere(viewer.id, _administered(viewer))


@lru_cache(maxsize=FILTER_CACHE_SIZE)
def _machines_anywhere(viewer_id: str, administered: tuple[str, ...]) -> ColumnElement[bool]:
    return cast(ColumnElement[bool], _sees_machine_row(Machine, viewer_id, administered))


def visible_groups_filter(viewer: Viewer, environment_id: str) -> Visible:
    """Groups of one environment the viewer may see."""
    return _groups_in(viewer.id, viewer.administers(environment_id), environment_id)


@lru_cache(maxsize=FILTER_CACHE_SIZE)
def _groups_in(viewer_id: str, administers: bool, environment_id: str) -> Visible:
    in_environment = col(MachineGroup.environment_id) == environment_id
    if administers:
        return _counted(MachineGroup, in_environment)
    owned = col(MachineGroup.owner_id) == viewer_id
    # A page walks the environment's groups in name order and stops at its size: a
    # probe of the grants for each group it passes costs less than listing all grants.
    where = in_environment & or_(
        owned, _granted(viewer_id, RecordKind.MACHINE_GROUP, col(MachineGroup.id))
    )
    # The count starts from the viewer's side (`own_groups`): counting stops past
    # COUNT_LIMIT, and a viewer who sees few groups among many pays for their own, not
    # for the others.
    return _from_own(where, own_groups(viewer_id, (), environment_id))


def _from_own(where: ColumnElement[bool], parts: Sequence[Select[Any]]) -> Visible:
    """A list whose rows are also read from the viewer's side, as disjoint `parts`."""
    own = union_all(*parts)
    # correlate(None): inside a page's statement, which also reads machine_groups and
    # grants, this must count on its own, not per row of the page.
    total = select(bounded_union(parts).correlate(None))
    # OFFSET 0: the rows are read as the parts say, then sorted; without it SQLite may
    # push the page's order into each part and walk an index that gives that order
    # (every group of the environment, by name) rather than the viewer's few.
    return Visible(where, total, select(own.subquery("own")).offset(0))


def visible_machines_filter(viewer: Viewer, environment_id: str) -> Visible:
    """Machines of one environment the viewer may see."""
    return _machines_in(viewer.id, _administered(viewer), environment_id)


@lru_cache(maxsize=FILTER_CACHE_SIZE)
def _machines_in(viewer_id: str, administered: tuple[str, ...], environment_id: str) -> Visible:
    in_environment = col(Machine.environment_id) == environment_id
    if environment_id in administered:
        return _counted(Machine, in_environment)
    # Administering another environment shows nothing of this one.
    where = in_environment & _machines_anywhere(viewer_id, ())
    return _from_own(where, own_machines(viewer_id, (), environment_id))


def visible_runs(viewer: Viewer) -> Visible:
    """Runs the viewer started, and runs whose queue (a group, or the machine they were
    aimed at) the viewer sees, in any environment."""
    return _made_or_targeted(Run, viewer.id, _administered(viewer))


def visible_connections(viewer: Viewer) -> Visible:
    """Connections the viewer owns or whose target they see."""
    return _made_or_targeted(Connection, viewer.id, _administered(viewer))


# Who made a run or a connection, and its target: a group, else a machine.
_MAKER_AND_TARGET: dict[type[Any], tuple[Any, Any, Any]] = {
    Run: (col(Run.started_by_id), col(Run.group_id), col(Run.target_machine_id)),
    Connection: (col(Connection.owner_id), col(Connection.group_id), col(Connection.machine_id)),
}


@lru_cache(maxsize=FILTER_CACHE_SIZE)
def _made_or_targeted(
    model: type[Run | Connection], viewer_id: str, administered: tuple[str, ...]
) -> Visible:
    """Runs or connections the viewer made, or whose target the viewer sees: its group
    when it names one, else its machine (as `sees_targeted` decides)."""
    maker, group, machine = _MAKER_AND_TARGET[model]
    where = or_(maker == viewer_id, _sees_target(group, machine, viewer_id, administered))
    return _counted(model, where)


def _sees_target(group: Any, machine: Any, viewer_id: str, administered: tuple[str, ...]) -> Any:
    """The viewer sees the target of a run or connection: its group when it names one,
    else its machine."""
    return or_(
        group.is_not(None) & _sees_group(group, viewer_id, administered),
        group.is_(None) & machine.is_not(None) & _sees_machine(machine, viewer_id, administered),
    )


# The same rules from the viewer's side: what they own, what they were granted, what
# their administered environments hold, each read by index from the viewer's id. Parts
# are disjoint (a grant is unique per user and record; the administered part leaves out
# what is owned or granted), so a count may add them up. Each part is led by the
# viewer's id: the other terms are checked on the rows it finds (`unindexed`).


def _named(record: Any) -> Select[Any]:
    return cast(
        Select[Any], select(col(record.id).label("id"), col(record.name_key).label("name_key"))
    )


def _direct(
    model: type[MachineGroup | Machine],
    viewer_id: str,
    administered: tuple[str, ...],
    environment_id: str | None,
) -> list[Select[Any]]:
    """The `model` records the viewer sees by their own right, as disjoint parts of `(id,
    name_key)`: owned, granted (owned by others), and the rest of the administered
    environments; machines standalone only (a grouped one is seen with its group)."""
    kind = RecordKind.MACHINE if model is Machine else RecordKind.MACHINE_GROUP
    label = "machine" if model is Machine else "group"
    owned = aliased(model, name=f"owned_{label}")
    granted = aliased(model, name=f"granted_{label}")
    other = aliased(model, name=f"administered_{label}")

    def only(record: Any) -> list[ColumnElement[bool]]:
        terms: list[ColumnElement[bool]] = []
        if model is Machine:
            terms.append(unindexed(col(record.group_id)).is_(None))
        if environment_id is not None:
            terms.append(unindexed(col(record.environment_id)) == environment_id)
        return terms

    parts = [
        _named(owned).where(col(owned.owner_id) == viewer_id, *only(owned)),
        _named(granted)
        .select_from(Grant)
        .join(granted, col(granted.id) == col(Grant.record_id))
        .where(
            col(Grant.user_id) == viewer_id,
            col(Grant.record_kind) == kind.value,
            col(granted.owner_id) != viewer_id,
            *only(granted),
        ),
    ]
    if administered:
        parts.append(
            _named(other).where(
                _one_of(col(other.environment_id), administered),
                col(other.owner_id) != viewer_id,
                ~_granted(viewer_id, kind, col(other.id)),
                *only(other),
            )
        )
    return parts


def own_groups(
    viewer_id: str, administered: tuple[str, ...], environment_id: str | None
) -> list[Select[Any]]:
    """The groups the viewer sees, as disjoint parts of `(id, name_key)`, in one
    environment or (`environment_id` None) in all."""
    return _direct(MachineGroup, viewer_id, administered, environment_id)


def own_machines(
    viewer_id: str, administered: tuple[str, ...], environment_id: str | None
) -> list[Select[Any]]:
    """The machines the viewer sees, as disjoint parts of `(id, name_key)`: those in the
    groups the viewer sees, and standalone ones seen by their own right. In that order:
    a bounded count stops at its limit, and the groups' members are read densely, where
    the viewer's own machines are filtered for the standalone ones (at 100x the
    operator's count read 3,000 owned machines to find 1,001 standalone: 23 ms)."""
    parts = []
    for number, groups in enumerate(own_groups(viewer_id, administered, None)):
        group = groups.subquery(f"seen_group_{number}")
        member = aliased(Machine, name=f"member_{number}")
        in_environment = (
            []
            if environment_id is None
            else [unindexed(col(member.environment_id)) == environment_id]
        )
        parts.append(
            _named(member)
            .select_from(group)
            .join(member, col(member.group_id) == group.c.id)
            .where(*in_environment)
        )
    return [*parts, *_direct(Machine, viewer_id, administered, environment_id)]


@dataclass(frozen=True, eq=False)
class Queues:
    """The queues whose runs a viewer sees (app/domain/queue_history.py reads them one by
    one), read from the viewer's side: the groups they see, the machines they see (a run
    aimed at a machine is seen with it), and `records`, how many of both there are,
    counted up to OWN_LIMIT + 1."""

    viewer_id: str
    administered: tuple[str, ...]
    groups: CTE
    machines: CTE
    records: Select[Any]

    def sees_queue_of(self, run: Any) -> ColumnElement[bool]:
        """The viewer sees the queue of `run` (a row of runs, or of an alias): probes, as
        the walk's filter decides it."""
        return cast(
            ColumnElement[bool],
            _sees_target(run.group_id, run.target_machine_id, self.viewer_id, self.administered),
        )


def visible_queues(viewer: Viewer) -> Queues:
    """The groups and machines, in any environment, whose queues the viewer sees."""
    return _queues(viewer.id, _administered(viewer))


@lru_cache(maxsize=FILTER_CACHE_SIZE)
def _queues(viewer_id: str, administered: tuple[str, ...]) -> Queues:
    groups = own_groups(viewer_id, administered, None)
    machines = own_machines(viewer_id, administered, None)
    records = select(bounded_union([*groups, *machines], OWN_LIMIT).correlate(None))
    return Queues(
        viewer_id,
        administered,
        union_all(*groups).cte("seen_groups"),
        union_all(*machines).cte("seen_machines"),
        records,
    )
