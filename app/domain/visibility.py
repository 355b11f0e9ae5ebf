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
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, Select, exists, false, func, or_, select
from sqlalchemy.orm import Mapped
from sqlmodel import col

from app.db.models import Connection, Grant, Machine, MachineGroup, Run
from app.domain.access import Seen
from app.domain.caller import Viewer
from app.domain.enums import RecordKind

FILTER_CACHE_SIZE = 1024
T = TypeVar("T")


@dataclass(frozen=True, eq=False)
class Visible:
    """The rows of one list a viewer may see: the filter of its rows, and a statement
    counting them (which need not be that filter: a count reads every visible row)."""

    where: ColumnElement[bool]
    total: Select[Any]

    def seen(self, rows: Sequence[T]) -> list[Seen[T]]:
        """Rows read through `where`: seen by the rules `where` mirrors."""
        return [Seen(row) for row in rows]


def _counted(model: type[Any], where: ColumnElement[bool]) -> Visible:
    return Visible(where, select(func.count()).select_from(model).where(where))


def _granted_ids(viewer_id: str, kind: RecordKind) -> Select[Any]:
    return select(col(Grant.record_id)).where(
        col(Grant.user_id) == viewer_id, col(Grant.record_kind) == kind.value
    )


def _administered(viewer: Viewer) -> tuple[str, ...]:
    return tuple(sorted(env for env in viewer.roles if viewer.administers(env)))


def _one_of(column: Mapped[str], values: tuple[str, ...]) -> ColumnElement[bool]:
    # Not `in_`: its list parameter is spliced into the SQL on every execution, which a
    # filter built once per viewer need not pay.
    return or_(false(), *(column == value for value in values))


def visible_groups_anywhere(viewer: Viewer) -> ColumnElement[bool]:
    """Groups the viewer owns, holds a grant on, or administers, in any environment."""
    return _groups_anywhere(viewer.id, _administered(viewer))


# `IN (the viewer's granted ids)`: SQLite lists the grants once, then tests every row
# against the list, the cheaper way when every row is read (a subquery of all the
# viewer's groups).
@lru_cache(maxsize=FILTER_CACHE_SIZE)
def _groups_anywhere(viewer_id: str, administered: tuple[str, ...]) -> ColumnElement[bool]:
    return or_(
        _one_of(col(MachineGroup.environment_id), administered),
        col(MachineGroup.owner_id) == viewer_id,
        col(MachineGroup.id).in_(_granted_ids(viewer_id, RecordKind.MACHINE_GROUP)),
    )


def visible_machines_anywhere(viewer: Viewer) -> ColumnElement[bool]:
    """Machines seen directly (standalone) or through a visible group, in any environment."""
    return _machines_anywhere(viewer.id, _administered(viewer))


@lru_cache(maxsize=FILTER_CACHE_SIZE)
def _machines_anywhere(viewer_id: str, administered: tuple[str, ...]) -> ColumnElement[bool]:
    visible_groups = select(col(MachineGroup.id)).where(_groups_anywhere(viewer_id, administered))
    standalone = col(Machine.group_id).is_(None) & or_(
        col(Machine.owner_id) == viewer_id,
        col(Machine.id).in_(_granted_ids(viewer_id, RecordKind.MACHINE)),
    )
    return or_(
        _one_of(col(Machine.environment_id), administered),
        standalone,
        col(Machine.group_id).in_(visible_groups),
    )


def visible_groups_filter(viewer: Viewer, environment_id: str) -> Visible:
    """Groups of one environment the viewer may see."""
    return _groups_in(viewer.id, viewer.administers(environment_id), environment_id)


@lru_cache(maxsize=FILTER_CACHE_SIZE)
def _groups_in(viewer_id: str, administers: bool, environment_id: str) -> Visible:
    in_environment = col(MachineGroup.environment_id) == environment_id
    if administers:
        return _counted(MachineGroup, in_environment)
    owned = col(MachineGroup.owner_id) == viewer_id
    viewers_grant = (
        col(Grant.user_id) == viewer_id,
        col(Grant.record_kind) == RecordKind.MACHINE_GROUP.value,
    )
    on_group = col(Grant.record_id) == col(MachineGroup.id)
    # A page walks the environment's groups in name order and stops at its size: a
    # probe of the grants for each group it passes costs less than listing all grants.
    where = in_environment & or_(owned, exists().where(*viewers_grant, on_group))
    # The count reads them all: the groups owned, then the granted ones owned by others
    # (a grant is unique per user and group, so nothing is counted twice), from the
    # viewer's own grants rather than every group of the environment.
    owned_count = select(func.count()).select_from(MachineGroup).where(in_environment, owned)
    granted_count = (
        select(func.count())
        .select_from(Grant)
        .join(MachineGroup, on_group)
        .where(*viewers_grant, in_environment, col(MachineGroup.owner_id) != viewer_id)
    )
    # correlate(None): inside a page's statement, which also reads machine_groups and
    # grants, these must count on their own, not per row of the page.
    total = select(
        owned_count.correlate(None).scalar_subquery()
        + granted_count.correlate(None).scalar_subquery()
    )
    return Visible(where, total)


def visible_machines_filter(viewer: Viewer, environment_id: str) -> Visible:
    """Machines of one environment the viewer may see."""
    return _machines_in(viewer.id, _administered(viewer), environment_id)


@lru_cache(maxsize=FILTER_CACHE_SIZE)
def _machines_in(viewer_id: str, administered: tuple[str, ...], environment_id: str) -> Visible:
    in_environment = col(Machine.environment_id) == environment_id
    return _counted(Machine, in_environment & _machines_anywhere(viewer_id, administered))


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
    """Runs or connections the viewer made, or whose target the viewer sees."""
    maker, group, machine = _MAKER_AND_TARGET[model]
    groups = select(col(MachineGroup.id)).where(_groups_anywhere(viewer_id, administered))
    machines = select(col(Machine.id)).where(_machines_anywhere(viewer_id, administered))
    where = or_(maker == viewer_id, group.in_(groups), machine.in_(machines))
    return _counted(model, where)
