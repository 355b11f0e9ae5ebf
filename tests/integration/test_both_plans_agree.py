"""The two plans a list is read by give the same pages, cursors and counts: the walk of
the list in its order, deciding each row by probes, and the read from the viewer's side,
their own records and the queues they see (app/domain/pages.py,
app/domain/queue_history.py).

On the generated worlds of the permission test (tests/integration/
test_sight_agrees_with_sql.py: random owners, grants and runs, many ties), with named
viewers added to each: one who sees one group, one who sees every group and machine, an
administrator of both environments, an owner of a group and of standalone machines
(runs aimed at machines that name no group), and a user who started runs in a group and
at a machine they do not see. Every list is read page after page, at page sizes that
cut within one busy queue, in both plans, unfiltered and by status.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import pytest

from app.db.engine import Database
from app.db.migrate import upgrade
from app.db.models import Environment, Grant, Machine, MachineGroup, Run, User
from app.domain.caller import Viewer
from app.domain.enums import AccessLevel, ErrorCode, RecordKind, RunStatus, SecurityRole
from app.domain.errors import DomainError
from app.domain.group_facts import list_groups
from app.domain.pages import Page, Plan, encode_cursor, page_by_name
from app.domain.runs import history
from app.domain.sight import Sight
from app.domain.visibility import visible_groups_filter, visible_machines_filter
from tests.integration.test_sight_agrees_with_sql import NOW, Seeded, generate, seeded, seen_ids

PageOf = Callable[[Any, Plan, int, str | None], Awaitable[Page[Any]]]
NAMED = ("one", "many", "admin", "owner", "former")
LISTS = 7  # groups and machines in each of two environments, runs three ways
SIZES = (2, 50)


def _with_named_viewers(seed: int, rows: list[Any], world: Seeded) -> list[Viewer]:
    """Adds the named viewers, their records and their runs to a generated world."""
    rng = random.Random(seed)
    env = world.environments[0]
    users = {name: User(name=name, name_key=name, created_at=NOW) for name in NAMED}
    own_group = MachineGroup(
        environment_id=env.id,
        name="mine",
        name_key="mine",
        owner_id=users["owner"].id,
        created_at=NOW,
    )
    own_machines = [
        Machine(
            environment_id=env.id,
            name=f"own{i}",
            name_key=f"own{i}",
            owner_id=users["owner"].id,
            key_hash=f"own-{seed}-{i}",
            created_at=NOW,
        )
        for i in range(2)
    ]
    standalone = [m for m in world.machines if m.group_id is None] + own_machines
    grants = [_grant(world.groups[1].id, RecordKind.MACHINE_GROUP, users["one"])]
    grants += [_grant(g.id, RecordKind.MACHINE_GROUP, users["many"]) for g in world.groups]
    grants += [_grant(m.id, RecordKind.MACHINE, users["many"]) for m in standalone]
    # `former` sees neither the group nor the machine they started runs on (no grant).
    unseen_group, unseen_machine = world.groups[0].id, own_machines[0].id
    targets: list[tuple[str | None, str | None, User]] = [
        (own_group.id, None, users["owner"]),
        (None, own_machines[0].id, users["owner"]),
        (None, own_machines[1].id, rng.choice(list(users.values()))),
        (unseen_group, None, users["former"]),
        (None, unseen_machine, users["former"]),
        (world.groups[1].id, None, users["one"]),
    ]
    runs = []
    for i in range(40):
        group_id, machine_id, starter = rng.choice(targets)
        runs.append(
            Run(
                flow_name=f"named{i}",
                group_id=group_id,
                target_machine_id=machine_id,
                started_by_id=starter.id,
                status=rng.choice(list(RunStatus)).value,
                enqueued_at=NOW - timedelta(minutes=rng.randrange(20)),
            )
        )
    world.runs.extend(runs)
    world.groups.append(own_group)
    world.machines.extend(own_machines)
    rows += [*users.values(), own_group, *own_machines, *grants, *runs]
    admin = {e.id: frozenset({SecurityRole.SYSTEM_ADMINISTRATOR}) for e in world.environments}
    return [
        Viewer(user=user, roles=admin if name == "admin" else {}) for name, user in users.items()
    ]


def _grant(record_id: str, kind: RecordKind, user: User) -> Grant:
    return Grant(
        record_kind=kind.value,
        record_id=record_id,
        user_id=user.id,
        level=AccessLevel.USER.value,
        created_at=NOW,
    )


async def _pages(db: Database, read: PageOf, plan: Plan, size: int) -> list[tuple[Any, ...]]:
    """Every page of a list read by `plan`, cursor after cursor: what each page shows."""
    pages: list[tuple[Any, ...]] = []
    after: str | None = None
    while True:
        async with db.read() as session:
            page = await read(session, plan, size, after)
        ids = [seen.record.id for seen in page.items]
        pages.append(
            (ids, list(page.cursors), page.has_next_page, page.total_count, page.total_exact)
        )
        if not page.has_next_page:
            return pages
        assert len(pages) < 200, "the pages do not end"
        after = page.cursors[-1]


def _lists(viewer: Viewer, environments: list[Environment]) -> dict[str, PageOf]:
    """Each list of the API that has both plans, for one viewer."""

    def groups(environment_id: str) -> PageOf:
        async def read(session: Any, plan: Plan, size: int, after: str | None) -> Page[Any]:
            visible = visible_groups_filter(viewer, environment_id)
            listing = await list_groups(
                session, viewer.id, visible, size, after, with_facts=True, plan=plan
            )
            return listing.page

        return read

    def machines(environment_id: str) -> PageOf:
        async def read(session: Any, plan: Plan, size: int, after: str | None) -> Page[Any]:
            visible = visible_machines_filter(viewer, environment_id)
            return await page_by_name(session, Machine, visible, size, after, plan=plan)

        return read

    def runs(statuses: list[RunStatus] | None) -> PageOf:
        async def read(session: Any, plan: Plan, size: int, after: str | None) -> Page[Any]:
            return await history(
                session,
                viewer,
                group_id=None,
                machine_id=None,
                statuses=statuses,
                first=size,
                after=after,
                plan=plan,
            )

        return read

    lists: dict[str, PageOf] = {}
    for env in environments:
        lists[f"groups in {env.name}"] = groups(env.id)
        lists[f"machines in {env.name}"] = machines(env.id)
    lists["runs"] = runs(None)
    lists["runs FAILED"] = runs([RunStatus.FAILED])
    lists["runs SUCCEEDED, QUEUED"] = runs([RunStatus.SUCCEEDED, RunStatus.QUEUED])
    assert len(lists) == LISTS
    return lists


async def _compare_plans(url: str, seed: int) -> int:
    rows, world = generate(seed, run_count=80)
    viewers = [*world.viewers, *_with_named_viewers(seed, rows, world)]
    db = await seeded(url, rows)
    try:
        compared = 0
        for viewer in viewers:
            seen_runs = seen_ids(await Sight(db, viewer).runs(world.runs))
            for name, read in _lists(viewer, world.environments).items():
                for size in SIZES:
                    walked = await _pages(db, read, Plan.WALK, size)
                    own = await _pages(db, read, Plan.OWN, size)
                    assert own == walked, (seed, name, size, viewer.user.name)
                    compared += 1
                if name == "runs":
                    # Not vacuous: the pages list what the permission path lets them see.
                    listed = {run_id for ids, *_rest in walked for run_id in ids}
                    assert listed == seen_runs, (seed, viewer.user.name)
                    assert walked[0][3:] == (len(seen_runs), True)
        return compared
    finally:
        await db.dispose()


@pytest.mark.parametrize("seed", range(4))
def test_both_plans_of_a_list_give_the_same_pages_cursors_and_counts(
    database_url: str, seed: int
) -> None:
    upgrade(database_url)
    viewers = 6 + len(NAMED)
    assert asyncio.run(_compare_plans(database_url, seed)) == viewers * LISTS * len(SIZES)


async def _refusals(url: str) -> list[tuple[Plan, ErrorCode, str | None]]:
    db = Database(url)
    viewer = Viewer(user=User(name="anyone", name_key="anyone"), roles={})
    refused = []
    try:
        for plan in (Plan.WALK, Plan.OWN):
            async with db.read() as session:
                with pytest.raises(DomainError) as caught:
                    await history(
                        session,
                        viewer,
                        group_id=None,
                        machine_id=None,
                        statuses=None,
                        first=5,
                        after=encode_cursor("not a moment", "an id"),
                        plan=plan,
                    )
            refused.append((plan, caught.value.code, caught.value.field))
        return refused
    finally:
        await db.dispose()


def test_both_plans_refuse_a_cursor_that_is_not_one_of_theirs(database_url: str) -> None:
    upgrade(database_url)
    assert asyncio.run(_refusals(database_url)) == [
        (plan, ErrorCode.VALIDATION, "after") for plan in (Plan.WALK, Plan.OWN)
    ]
