"""The permission path (app/domain/access.py, decided by app/domain/sight.py) and its SQL
mirror (app/domain/visibility.py) see the same records, kind by kind.

Worlds are generated from fixed seeds on a real database: users owning groups and
machines in two environments, grants on groups and on machines (some dormant, on
machines inside groups), runs and connections aimed at groups, at machines, at records
since deleted and at nothing, in several statuses, at a few instants (many ties);
viewers with and without administrator roles.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select
from sqlmodel import col

from app.db.engine import Database
from app.db.migrate import upgrade
from app.db.models import Connection, Environment, Grant, Machine, MachineGroup, Run, User
from app.domain.caller import Viewer
from app.domain.enums import AccessLevel, RecordKind, RunStatus, SecurityRole
from app.domain.sight import Sight
from app.domain.visibility import (
    Visible,
    visible_connections,
    visible_groups_anywhere,
    visible_groups_filter,
    visible_machines_anywhere,
    visible_machines_filter,
    visible_runs,
)

NOW = datetime(2026, 1, 1, tzinfo=UTC)


@dataclass
class Seeded:
    """A generated world: its rows, and the viewers to decide for."""

    environments: list[Environment]
    groups: list[MachineGroup]
    machines: list[Machine]
    runs: list[Run]
    connections: list[Connection]
    viewers: list[Viewer]


def generate(seed: int, run_count: int = 30) -> tuple[list[Any], Seeded]:
    rng = random.Random(seed)
    environments = [
        Environment(name=f"env{i}", name_key=f"env{i}", region="us", created_at=NOW)
        for i in range(2)
    ]
    users = [User(name=f"user{i}", name_key=f"user{i}", created_at=NOW) for i in range(6)]

    def anyone() -> User:
        return rng.choice(users)

    def somewhere() -> Environment:
        return rng.choice(environments)

    groups = []
    for i in range(8):
        where = somewhere()
        groups.append(
            MachineGroup(
                environment_id=where.id,
                name=f"g{i}",
                name_key=f"g{i}",
                owner_id=anyone().id,
                created_at=NOW,
            )
        )
    machines = []
    for i in range(12):
        group = rng.choice([None, None, *groups])
        machines.append(
            Machine(
                environment_id=group.environment_id if group else somewhere().id,
                name=f"m{i}",
                name_key=f"m{i}",
                owner_id=anyone().id,
                group_id=group.id if group else None,
                key_hash=f"key-{seed}-{i}",
                created_at=NOW,
            )
        )
    grants = {}
    for _ in range(20):
        kind, record = rng.choice(
            [(RecordKind.MACHINE_GROUP, g.id) for g in groups]
            + [(RecordKind.MACHINE, m.id) for m in machines]
        )
        user = anyone()
        grants[(kind, record, user.id)] = Grant(
            record_kind=kind.value,
            record_id=record,
            user_id=user.id,
            level=rng.choice([AccessLevel.USER, AccessLevel.CO_OWNER]).value,
            created_at=NOW,
        )
    deleted = "a-group-or-machine-since-deleted"
    targets: list[tuple[str | None, str | None]] = [
        *((g.id, None) for g in groups),
        *((None, m.id) for m in machines),
        (deleted, None),
        (None, deleted),
        (None, None),
    ]
    connections = []
    for i in range(15):
        group_id, machine_id = rng.choice(targets)
        connections.append(
            Connection(
                name=f"c{i}",
                name_key=f"c{i}",
                owner_id=anyone().id,
                group_id=group_id if group_id != deleted else None,
                machine_id=machine_id if machine_id != deleted else None,
                username="robot",
                password_encrypted="-",
                created_at=NOW,
            )
        )
    runs = []
    statuses = [RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.QUEUED, RunStatus.CANCELLED]
    # One busy queue: a page cut within one queue's runs, not only between queues.
    busy: list[tuple[str | None, str | None]] = [(groups[0].id, None)] * len(targets)
    for i in range(run_count):
        group_id, machine_id = rng.choice(targets + busy if i % 2 else targets)
        runs.append(
            Run(
                flow_name=f"flow{i}",
                group_id=group_id,
                target_machine_id=machine_id,
                machine_id=rng.choice([None, *(m.id for m in machines)]),
                started_by_id=anyone().id,
                status=rng.choice(statuses).value,
                # Some at the same instant: pages cut between those too.
                enqueued_at=NOW - timedelta(minutes=rng.randrange(run_count // 2)),
            )
        )
    viewers = []
    for user in users:
        roles = {
            env.id: frozenset({SecurityRole.SYSTEM_ADMINISTRATOR})
            for env in environments
            if rng.random() < 0.2
        }
        viewers.append(Viewer(user=user, roles=roles))
    rows: list[Any] = [*environments, *users, *groups, *machines, *grants.values()]
    rows += [*connections, *runs]
    return rows, Seeded(environments, groups, machines, runs, connections, viewers)


async def _sql_ids(db: Database, model: type[Any], where: Any) -> set[str]:
    async with db.read() as session:
        return set(await session.scalars(select(col(model.id)).where(where)))


async def _count(db: Database, visible: Visible) -> int:
    async with db.read() as session:
        return int((await session.execute(visible.total)).scalar_one())


def seen_ids(decided: Sequence[Any]) -> set[str]:
    return {seen.record.id for seen in decided if seen is not None}


async def seeded(url: str, rows: list[Any]) -> Database:
    db = Database(url)
    async with db.write() as session:
        for row in rows:
            session.add(row)
            await session.flush()  # parents before the rows that name them
    return db


async def _compare(url: str, seed: int) -> int:
    rows, world = generate(seed)
    db = await seeded(url, rows)
    try:
        compared = 0
        for viewer in world.viewers:
            sight = Sight(db, viewer)
            groups = await sight.groups(world.groups)
            machines = await sight.machines(world.machines)
            pairs: list[tuple[Sequence[Any], type[Any], Any]] = [
                (groups, MachineGroup, visible_groups_anywhere(viewer)),
                (machines, Machine, visible_machines_anywhere(viewer)),
                (await sight.runs(world.runs), Run, visible_runs(viewer).where),
                (
                    await sight.connections(world.connections),
                    Connection,
                    visible_connections(viewer).where,
                ),
            ]
            for decided, model, where in pairs:
                assert seen_ids(decided) == await _sql_ids(db, model, where), (seed, model, viewer)
                compared += 1
            # The lists' filters per environment, and their counts.
            for env in world.environments:
                lists = (
                    (MachineGroup, visible_groups_filter(viewer, env.id), groups),
                    (Machine, visible_machines_filter(viewer, env.id), machines),
                )
                for model, visible, decided in lists:
                    in_env = {
                        seen.record.id
                        for seen in decided
                        if seen is not None and seen.record.environment_id == env.id
                    }
                    assert in_env == await _sql_ids(db, model, visible.where), (seed, model)
                    assert len(in_env) == await _count(db, visible), (seed, model)
        return compared
    finally:
        await db.dispose()


@pytest.mark.parametrize("seed", range(6))
def test_the_permission_path_and_its_sql_mirror_see_the_same_records(
    database_url: str, seed: int
) -> None:
    upgrade(database_url)
    assert asyncio.run(_compare(database_url, seed)) == 6 * 4
