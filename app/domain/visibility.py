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

from sqlalchemy import ColumnElement, Select, false, literal, or_, select
from sqlalchemy.orm import aliased
from sqlmodel import col

from app.db.models import Connection, Grant, Machine, MachineGroup, Run
from app.domain.access import Seen
from app.domain.caller import Viewer
from app.domain.counts import bounded, bounded_union
from app.domain.enums import RecordKind

FILTER_CACHE_SIZE = 1024
T = TypeVar("T")


@dataclass(frozen=True, eq=False)
class Visible:
    """The rows of one list a viewer may see: the filter of its rows, and a statement
    counting them, at most COUNT_LIMIT + 1 of them (app/domain/counts.py)."""

    where: ColumnElement[bool]
    total: Select[Any]

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
    # The count starts from the viewer's side: the groups they own (by owner), then the
    # granted ones owned by others (a grant is unique per user and group, so nothing is
    # counted twice), from the viewer's own grants; counting stops past COUNT_LIMIT. A
    # viewer who sees few groups among many pays for their own, not for the others.
    owned_rows = select(literal(1)).select_from(MachineGroup).where(owned, in_environment)
    granted_rows = (
        select(literal(1))
        .select_from(Grant)
        .join(MachineGroup, col(Grant.record_id) == col(MachineGroup.id))
        .where(
            col(Grant.user_id) == viewer_id,
            col(Grant.record_kind) == RecordKind.MACHINE_GROUP.value,
            in_environment,
            col(MachineGroup.owner_id) != viewer_id,
        )
    )
    # correlate(None): inside a page's statement, which also reads machine_groups and
    # grants, this must count on its own, not per row of the page.
    total = select(bounded_union([owned_rows, granted_rows]).correlate(None))
    return Visible(where, total)


def visible_machines_filter(viewer: Viewer, environment_id: str) -> Visible:
    """Machines of one environment the viewer may see."""
    return _machines_in(viewer.id, _administered(viewer), environment_id)


@lru_cache(maxsize=FILTER_CACHE_SIZE)
def _machines_in(viewer_id: str, administered: tuple[str, ...], environment_id: str) -> Visible:
    in_environment = col(Machine.environment_id) == environment_id
    if environment_id in administered:
        return _counted(Machine, in_environment)
    return _counted(Machine, in_environment & _machines_anywhere(viewer_id, ()))


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
    where = or_(
        maker == viewer_id,
        group.is_not(None) & _sees_group(group, viewer_id, administered),
        group.is_(None) & machine.is_not(None) & _sees_machine(machine, viewer_id, administered),
    )
    return _counted(model, where)
