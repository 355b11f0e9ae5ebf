"""What a list of groups shows beside each group, read in one statement for a whole page."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ScalarSelect, and_, bindparam, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from app.db.models import Grant, Machine, MachineGroup, Run, User
from app.domain.enums import AccessLevel, RecordKind, RunStatus


@dataclass(frozen=True, slots=True)
class Owner:
    """What a page shows of a group's owner: read as plain columns, not as a User row,
    since building 50 ORM rows cost more than the statement itself."""

    id: str
    name: str
    deactivated: bool
    premium: bool


@dataclass(frozen=True, slots=True)
class GroupFacts:
    """One group's owner, the viewer's grant on it, and its machine and run counts."""

    owner: Owner
    granted: AccessLevel | None
    machine_count: int
    running_count: int
    queued_count: int


def _runs_in(status: RunStatus) -> ScalarSelect[int]:
    return (
        select(func.count())
        .where(col(Run.group_id) == col(MachineGroup.id), col(Run.status) == status.value)
        .scalar_subquery()
    )


def _facts_statement() -> Any:
    """The facts of the groups `group_ids` for the user `viewer_id`: built once, with bound
    parameters, so each page only binds values (building it cost more than running it)."""
    machines = (
        select(func.count()).where(col(Machine.group_id) == col(MachineGroup.id)).scalar_subquery()
    )
    grant = and_(
        col(Grant.record_kind) == RecordKind.MACHINE_GROUP.value,
        col(Grant.record_id) == col(MachineGroup.id),
        col(Grant.user_id) == bindparam("viewer_id"),
    )
    return (
        select(
            col(MachineGroup.id),
            col(User.id),
            col(User.name),
            col(User.deactivated),
            col(User.premium),
            col(Grant.level),
            machines,
            _runs_in(RunStatus.RUNNING),
            _runs_in(RunStatus.QUEUED),
        )
        .join(User, col(User.id) == col(MachineGroup.owner_id))
        .outerjoin(Grant, grant)
        .where(col(MachineGroup.id).in_(bindparam("group_ids", expanding=True)))
    )


_FACTS = _facts_statement()


async def group_facts(
    session: AsyncSession, viewer_id: str | None, group_ids: Sequence[str]
) -> dict[str, GroupFacts]:
    """The facts of each group, by id (one statement: a page costs one round trip, as each
    statement through the async driver costs far more than the database's own work)."""
    # Through the session's connection: plain rows, without the ORM's result processing.
    connection = await session.connection()
    rows = await connection.execute(_FACTS, {"viewer_id": viewer_id, "group_ids": list(group_ids)})
    return {
        group_id: GroupFacts(
            owner=Owner(*owner),
            granted=AccessLevel(level) if level else None,
            machine_count=machine_count,
            running_count=running,
            queued_count=queued,
        )
        for group_id, *owner, level, machine_count, running, queued in rows
    }
