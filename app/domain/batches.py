"""Batched reads behind the API's DataLoaders: one statement for many records."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import TypeVar

from sqlalchemy import case, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from app.db.models import (
    Connection,
    Environment,
    Grant,
    Machine,
    MachineGroup,
    RoleAssignment,
    Run,
    User,
)
from app.domain.enums import AccessLevel, RecordKind, RunStatus, SecurityRole

Row = TypeVar("Row", Environment, User, MachineGroup, Machine, Run, Connection)


async def rows_by_id(
    session: AsyncSession, model: type[Row], ids: Sequence[str]
) -> list[Row | None]:
    """Rows of `model` for each id, in the order asked (None where missing)."""
    if not ids:
        return []
    rows = await session.scalars(select(model).where(col(model.id).in_(ids)))
    found = {row.id: row for row in rows}
    return [found.get(row_id) for row_id in ids]


async def machine_counts(session: AsyncSession, group_ids: Sequence[str]) -> list[int]:
    """How many machines each group holds."""
    rows = await session.execute(
        select(col(Machine.group_id), func.count())
        .where(col(Machine.group_id).in_(group_ids))
        .group_by(col(Machine.group_id))
    )
    counts: dict[str | None, int] = {group_id: count for group_id, count in rows}
    return [counts.get(group_id, 0) for group_id in group_ids]


async def run_counts(session: AsyncSession, group_ids: Sequence[str]) -> list[tuple[int, int]]:
    """(running, queued) runs of each group."""
    running = func.sum(case((col(Run.status) == RunStatus.RUNNING.value, 1), else_=0))
    queued = func.sum(case((col(Run.status) == RunStatus.QUEUED.value, 1), else_=0))
    rows = await session.execute(
        select(col(Run.group_id), running, queued)
        .where(
            col(Run.group_id).in_(group_ids),
            col(Run.status).in_([RunStatus.RUNNING.value, RunStatus.QUEUED.value]),
        )
        .group_by(col(Run.group_id))
    )
    counts = {group_id: (int(r or 0), int(q or 0)) for group_id, r, q in rows}
    return [counts.get(group_id, (0, 0)) for group_id in group_ids]


async def granted_levels(
    session: AsyncSession, user_id: str, kind: RecordKind, record_ids: Sequence[str]
) -> list[AccessLevel | None]:
    """The level of one user's grant on each record (None where they hold none)."""
    rows = await session.execute(
        select(col(Grant.record_id), col(Grant.level)).where(
            col(Grant.user_id) == user_id,
            col(Grant.record_kind) == kind.value,
            col(Grant.record_id).in_(record_ids),
        )
    )
    levels = {record_id: AccessLevel(level) for record_id, level in rows}
    return [levels.get(record_id) for record_id in record_ids]


async def grants_of(
    session: AsyncSession, kind: RecordKind, record_ids: Sequence[str]
) -> list[list[tuple[User, AccessLevel]]]:
    """Every grant on each record, with its user, oldest first."""
    rows = await session.execute(
        select(col(Grant.record_id), col(Grant.level), User)
        .join(User, col(User.id) == col(Grant.user_id))
        .where(col(Grant.record_kind) == kind.value, col(Grant.record_id).in_(record_ids))
        .order_by(col(Grant.created_at), col(User.name_key))
    )
    grants: defaultdict[str, list[tuple[User, AccessLevel]]] = defaultdict(list)
    for record_id, level, user in rows:
        grants[record_id].append((user, AccessLevel(level)))
    return [grants.get(record_id, []) for record_id in record_ids]


async def machines_of(session: AsyncSession, group_ids: Sequence[str]) -> list[list[Machine]]:
    """The machines of each group, by name."""
    machines: defaultdict[str | None, list[Machine]] = defaultdict(list)
    for machine in await session.scalars(
        select(Machine)
        .where(col(Machine.group_id).in_(group_ids))
        .order_by(col(Machine.name_key), col(Machine.id))
    ):
        machines[machine.group_id].append(machine)
    return [machines.get(group_id, []) for group_id in group_ids]


async def roles_of(
    session: AsyncSession, user_ids: Sequence[str]
) -> list[dict[str, frozenset[SecurityRole]]]:
    """Each user's security roles, per environment id."""
    rows = await session.execute(
        select(
            col(RoleAssignment.user_id),
            col(RoleAssignment.environment_id),
            col(RoleAssignment.role),
        ).where(col(RoleAssignment.user_id).in_(user_ids))
    )
    held: defaultdict[str, defaultdict[str, set[SecurityRole]]] = defaultdict(
        lambda: defaultdict(set)
    )
    for user_id, environment_id, role in rows:
        held[user_id][environment_id].add(SecurityRole(role))
    return [
        {env: frozenset(roles) for env, roles in held.get(user_id, {}).items()}
        for user_id in user_ids
    ]


async def running_runs(session: AsyncSession, machine_ids: Sequence[str]) -> list[Run | None]:
    """The run each machine holds now, if any."""
    found = {
        run.machine_id: run
        for run in await session.scalars(
            select(Run).where(
                col(Run.machine_id).in_(machine_ids),
                col(Run.status) == RunStatus.RUNNING.value,
            )
        )
    }
    return [found.get(machine_id) for machine_id in machine_ids]
