"""`machineGroups` costs a constant number of SQL statements, whatever the page shows.

The groups, machines, runs and grants are inserted straight into the database (this test
is about the read path); the query goes over real HTTP to the live server, and every
statement the server's engine sends is counted with a SQLAlchemy event listener.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest

from app.db.models import Grant, Machine, MachineGroup, RoleAssignment, Run, User, new_id
from app.domain.clock import ManualClock
from app.domain.enums import AccessLevel, RecordKind, RunStatus, SecurityRole
from app.domain.identity import mint_token
from app.domain.users import user_by_name
from app.settings import Settings
from tests.api.conftest import Account, Api
from tests.api.statements import StatementLog
from tests.conftest import POLICIES
from tests.databases import fresh_database
from tests.server import LiveServer

GROUPS = 1000

GROUPS_QUERY = """
query Groups($first: Int, $after: String) {
  machineGroups(first: $first, after: $after) {
    totalCount
    pageInfo { hasNextPage endCursor }
    edges { node {
      id name description myAccess
      machineCount runningCount queuedCount
      owner { name }
      hasDeactivatedUsers
      machines { id }
      access { access user { name } }
    } }
  }
}
"""


@dataclass
class Expected:
    """What was inserted for one group, as the API should show it to the viewer."""

    name: str
    description: str | None
    owner: str
    my_access: str
    machine_ids: list[str] = field(default_factory=list)
    running: int = 0
    queued: int = 0
    has_deactivated_users: bool = False
    access: list[dict[str, Any]] = field(default_factory=list)
    full_access: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class World:
    """The server, who asks, and what each group holds."""

    server: LiveServer
    admin: Account
    viewer: Account
    few_viewer: Account
    expected: dict[str, Expected]
    few_group_ids: set[str]

    @property
    def api(self) -> Api:
        """A GraphQL client for the server."""
        return Api(self.server)


def _account(server: LiveServer, user: User) -> Account:
    return Account(user.id, user.name, mint_token(server.settings, user, server.clock.now()))


def _insert_world(server: LiveServer) -> World:
    """1,000 groups the viewer owns or holds a grant on, with machines, runs and grants.

    - group i is owned by the viewer when i % 10 == 0, else by `alice`; the viewer holds
      CO_OWNER on it when i % 10 in (1, 2, 3) and USER otherwise;
    - it holds i % 4 machines, min(i % 2, machines) running and i % 5 queued runs;
    - `bob` holds CO_OWNER when i % 5 == 0, deactivated `zed` holds USER when i % 7 == 0;
    - `few_viewer` holds USER on groups 0..6 only.
    Both viewers are DESKTOP_FLOWS_MACHINE_OWNERs: at OWNER or CO_OWNER level they may
    share and see every grant; at USER level they see only their own.
    """
    environment_id = server.state.default_environment_id
    now = server.clock.now()
    expected: dict[str, Expected] = {}
    few_group_ids: set[str] = set()
    users = {
        name: User(id=new_id(), name=name, name_key=name, created_at=now)
        for name in ("viewer", "few", "alice", "bob", "zed")
    }
    users["zed"].deactivated = True
    viewer, few_viewer = users["viewer"], users["few"]
    alice, bob, zed = users["alice"], users["bob"], users["zed"]

    async def insert() -> User:
        async with server.state.db.write() as session:
            session.add_all(users.values())
            await session.flush()
            session.add_all(
                RoleAssignment(
                    user_id=user.id,
                    environment_id=environment_id,
                    role=SecurityRole.DESKTOP_FLOWS_MACHINE_OWNER.value,
                )
                for user in (viewer, few_viewer)
            )
            admin = await user_by_name(session, "admin")
            assert admin is not None
            groups: list[MachineGroup] = []
            rows: list[Any] = []  # grants and machines
            runs: list[Run] = []
            for i in range(GROUPS):
                owned = i % 10 == 0
                owner = viewer.id if owned else alice.id
                group = MachineGroup(
                    id=new_id(),
                    environment_id=environment_id,
                    name=f"Group {i:04d}",
                    name_key=f"group {i:04d}",
                    description=f"description {i}" if i % 2 == 0 else None,
                    owner_id=owner,
                    created_at=now,
                )
                groups.append(group)
                level = None if owned else ("CO_OWNER" if i % 10 in (1, 2, 3) else "USER")
                exp = Expected(
                    name=group.name,
                    description=group.description,
                    owner="viewer" if owned else "alice",
                    my_access="OWNER" if owned else str(level),
                )
                grants: list[tuple[str, str, str]] = []  # (user id, name, level) oldest first
                if level is not None:
                    grants.append((viewer.id, viewer.name, level))
                if i % 5 == 0:
                    grants.append((bob.id, "bob", "CO_OWNER"))
                if i % 7 == 0:
                    grants.append((zed.id, "zed", "USER"))
                    exp.has_deactivated_users = True
                if i < 7:
                    grants.append((few_viewer.id, few_viewer.name, "USER"))
                    few_group_ids.add(group.id)
                for order, (user_id, _name, grant_level) in enumerate(grants):
                    rows.append(
                        Grant(
                            record_kind=RecordKind.MACHINE_GROUP.value,
                            record_id=group.id,
                            user_id=user_id,
                            level=grant_level,
                            created_at=now + timedelta(seconds=order),
                        )
                    )
                full: list[dict[str, Any]] = [{"access": "OWNER", "user": {"name": exp.owner}}]
                full += [
                    {"access": grant_level, "user": {"name": name}}
                    for _id, name, grant_level in grants
                ]
                exp.full_access = full
                may_share = exp.my_access in ("OWNER", "CO_OWNER")
                exp.access = (
                    full
                    if may_share
                    else [entry for entry in full if entry["user"]["name"] == viewer.name]
                )
                machines = [
                    Machine(
                        id=new_id(),
                        environment_id=environment_id,
                        name=f"VM {i:04d}-{k}",
                        name_key=f"vm {i:04d}-{k}",
                        owner_id=owner,
                        group_id=group.id,
                        key_hash=new_id(),
                        created_at=now,
                    )
                    for k in range(i % 4)
                ]
                rows += machines
                exp.machine_ids = [machine.id for machine in machines]
                exp.running = min(i % 2, len(machines))
                exp.queued = i % 5
                for k in range(exp.running):
                    runs.append(
                        Run(
                            flow_name="close-month",
                            status=RunStatus.RUNNING.value,
                            group_id=group.id,
                            machine_id=machines[k].id,
                            started_by_id=viewer.id,
                            enqueued_at=now,
                            started_at=now,
                        )
                    )
                for k in range(exp.queued):
                    runs.append(
                        Run(
                            flow_name=f"flow {k}",
                            status=RunStatus.QUEUED.value,
                            group_id=group.id,
                            started_by_id=viewer.id,
                            enqueued_at=now + timedelta(seconds=k),
                        )
                    )
                # Finished runs are in no count.
                runs.append(
                    Run(
                        flow_name="done",
                        status=RunStatus.SUCCEEDED.value,
                        group_id=group.id,
                        started_by_id=viewer.id,
                        enqueued_at=now,
                        finished_at=now,
                    )
                )
                expected[group.id] = exp
            # No relationships tell the unit of work the order: flush parents first.
            for batch in (groups, rows, runs):
                session.add_all(batch)
                await session.flush()
            return admin

    admin = server.run(insert())
    return World(
        server=server,
        admin=_account(server, admin),
        viewer=_account(server, viewer),
        few_viewer=_account(server, few_viewer),
        expected=expected,
        few_group_ids=few_group_ids,
    )


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """One server and one database for the module: its tests only read."""
    folder = tmp_path_factory.mktemp("query-cost")
    with fresh_database(folder) as database_url:
        yield from _serve_world(database_url)


def _serve_world(database_url: str) -> Iterator[World]:
    settings = Settings(
        database_url=database_url,
        secret_keys=("test-secret-key-0123456789abcdef0123456789",),
        policy_dir=POLICIES,
        sweep_interval=3600,  # the inserted machines never heartbeat: no sweeper here
    )
    server = LiveServer(settings, ManualClock()).start()
    try:
        yield _insert_world(server)
    finally:
        server.stop()


def _check_page(data: dict[str, Any], world: World, first: int, total: int) -> list[str]:
    """The page's groups are the first `first` by name, each as inserted; their ids."""
    connection = data["machineGroups"]
    assert connection["totalCount"] == total
    edges = connection["edges"]
    assert len(edges) == min(first, total)
    assert connection["pageInfo"]["hasNextPage"] is (first < total)
    names = [edge["node"]["name"] for edge in edges]
    assert names == sorted(names)
    for edge in edges:
        node = edge["node"]
        exp = world.expected[node["id"]]
        assert node["name"] == exp.name
        assert node["description"] == exp.description
        assert node["owner"] == {"name": exp.owner}
        assert node["machineCount"] == len(exp.machine_ids)
        assert [machine["id"] for machine in node["machines"]] == exp.machine_ids
        assert node["runningCount"] == exp.running
        assert node["queuedCount"] == exp.queued
        assert node["hasDeactivatedUsers"] is exp.has_deactivated_users
    return [edge["node"]["id"] for edge in edges]


def test_a_page_of_groups_costs_the_same_statements_whatever_its_size(world: World) -> None:
    log, api = StatementLog(world.server, GROUPS_QUERY), world.api
    counts: dict[int, int] = {}
    for first in (5, 50, 100):
        counts[first], data = log.count(api, {"first": first}, world.viewer)
        ids = _check_page(data, world, first, GROUPS)
        for edge in data["machineGroups"]["edges"]:
            node, exp = edge["node"], world.expected[edge["node"]["id"]]
            assert node["myAccess"] == exp.my_access
            assert node["access"] == exp.access
        assert ids == sorted(world.expected, key=lambda gid: world.expected[gid].name)[:first]
    assert counts[5] == counts[50] == counts[100], counts
    # Authentication, the page with its total, then one batch per kind of data loaded;
    # each read session adds its BEGIN, so the total is bounded too.
    assert len(log.queries) <= 15, log.queries
    assert counts[100] <= 25, log.statements


def test_the_page_shows_every_kind_of_data_it_counts(world: World) -> None:
    """The measured pages are not trivially cheap: every field has something to load."""
    log = StatementLog(world.server, GROUPS_QUERY)
    _count, data = log.count(world.api, {"first": 100}, world.viewer)
    nodes = [edge["node"] for edge in data["machineGroups"]["edges"]]
    assert {node["myAccess"] for node in nodes} == {"OWNER", "CO_OWNER", "USER"}
    assert any(node["hasDeactivatedUsers"] for node in nodes)
    assert any(node["runningCount"] and node["queuedCount"] for node in nodes)
    assert sum(node["machineCount"] for node in nodes) > 100
    assert any(len(node["access"]) > 2 for node in nodes)
    assert any(node["description"] is None for node in nodes)


def test_later_pages_cost_the_same_as_the_first(world: World) -> None:
    log, api = StatementLog(world.server, GROUPS_QUERY), world.api
    first_cost, first_page = log.count(api, {"first": 100}, world.viewer)
    seen = set(_check_page(first_page, world, 100, GROUPS))
    after = first_page["machineGroups"]["pageInfo"]["endCursor"]
    for _ in range(3):
        cost, page = log.count(api, {"first": 100, "after": after}, world.viewer)
        assert cost == first_cost
        ids = [edge["node"]["id"] for edge in page["machineGroups"]["edges"]]
        assert len(ids) == 100
        assert seen.isdisjoint(ids)
        seen.update(ids)
        after = page["machineGroups"]["pageInfo"]["endCursor"]
    assert len(seen) == 400


def test_the_cost_does_not_grow_with_the_groups_the_viewer_holds(world: World) -> None:
    log, api = StatementLog(world.server, GROUPS_QUERY), world.api
    many, _data = log.count(api, {"first": 5}, world.viewer)
    # An administrator sees every group without holding any grant. Their page is one
    # statement: a viewer's is two, the count from their side that picks how the page is
    # read (app/domain/pages.py), then the page.
    for first in (5, 100):
        cost, data = log.count(api, {"first": first}, world.admin)
        assert cost == many - 1
        _check_page(data, world, first, GROUPS)
        for node in (edge["node"] for edge in data["machineGroups"]["edges"]):
            assert node["myAccess"] is None
            assert node["access"] == world.expected[node["id"]].full_access
    for first in (5, 50):
        few, data = log.count(api, {"first": first}, world.few_viewer)
        ids = _check_page(data, world, first, len(world.few_group_ids))
        assert set(ids) <= world.few_group_ids
        for node in (edge["node"] for edge in data["machineGroups"]["edges"]):
            assert node["myAccess"] == AccessLevel.USER.value
            # A USER-level holder without the can-share role sees only its own grant.
            assert node["access"] == [{"access": "USER", "user": {"name": world.few_viewer.name}}]
        assert few == many
