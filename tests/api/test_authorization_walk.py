"""Authorization as a property of the graph: every path, every moment (spec).

A world is seeded through the API with a sentinel in every text field of every record
(`SENT_<record>_<field>`). For viewers who hold no grant, a revoked grant, a USER grant,
a removed administrator role and a deactivated account, queries built from the schema
itself (tests/api/schema_walk.py) walk every field that leads to an object, four record
hops deep; no answer may hold a sentinel of a record the viewer may not see. The same
walk runs over WebSockets opened before the revoke, the role removal and the
deactivation.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import pytest
from graphql import GraphQLObjectType
from websockets.exceptions import ConnectionClosed

from app.settings import Settings
from tests.api.conftest import Account, Api, MakeUser
from tests.api.queue_helpers import (
    CREATE_CONNECTION,
    DEACTIVATE,
    REVOKE_GROUP,
    START_RUN,
    MakeGroup,
    MakeMachine,
    add_machine,
    claimed,
    complete,
    share_group,
)
from tests.api.schema_walk import INTROSPECTION, Probe, Walk, client_schema, records_in, sentinel
from tests.server import LiveServer
from tests.ws import GraphQLSocket

DEPTH = 4
REMOVE_ADMIN = """
mutation($u: ID!) { removeSecurityRole(userId: $u, role: SYSTEM_ADMINISTRATOR) { errors { code } } }
"""
UPDATE_GROUP = """
mutation($id: ID!, $d: String) { updateMachineGroup(input: {id: $id, description: $d}) {
  errors { code } } }"""
UPDATE_MACHINE = """
mutation($id: ID!, $d: String) { updateMachine(input: {id: $id, description: $d}) {
  errors { code } } }"""


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The abuse limits opened wide: the walk's documents are large on purpose."""
    return replace(
        settings, max_query_depth=60, max_tokens=500_000, max_query_cost=10**9, max_aliases=50
    )


@dataclass
class World:
    """The seeded records (by sentinel name) and who should see which."""

    ids: dict[str, list[str]] = field(default_factory=dict)
    records: set[str] = field(default_factory=set)
    viewers: dict[str, Account] = field(default_factory=dict)
    sees: dict[str, set[str]] = field(default_factory=dict)

    def add(self, kind: str, record: str, record_id: str) -> str:
        """Remember a record of `kind` (a GraphQL type name) under its sentinel name."""
        self.ids.setdefault(kind, []).append(record_id)
        self.records.add(record)
        return record_id


def _connection(api: Api, world: World, record: str, as_: Account, **target: str) -> str:
    variables = {
        "n": sentinel(record, "NAME"),
        "u": sentinel(record, "USER"),
        "p": "Pa55word-on-the-VM!",
        "m": target.get("machine_id"),
        "g": target.get("group_id"),
    }
    payload = api.ok(CREATE_CONNECTION, variables, as_=as_)
    return world.add("Connection", record, payload["connection"]["id"])


def _run(api: Api, world: World, record: str, connection: str, as_: Account) -> str:
    inputs = {"note": sentinel(record, "INPUT")}
    variables = {"c": connection, "f": sentinel(record, "FLOW"), "i": inputs}
    return world.add("Run", record, api.ok(START_RUN, variables, as_=as_)["run"]["id"])


def _described(
    api: Api, world: World, kind: str, record: str, record_id: str, as_: Account
) -> None:
    mutation = UPDATE_GROUP if kind == "MachineGroup" else UPDATE_MACHINE
    api.ok(mutation, {"id": record_id, "d": sentinel(record, "DESC")}, as_=as_)
    world.add(kind, record, record_id)


@pytest.fixture
def world(
    api: Api, admin: Account, make_user: MakeUser, make_group: MakeGroup, make_machine: MakeMachine
) -> World:
    """Groups GA and GB, machines MA (in GA), MB (in GB) and MS (standalone), connections
    and runs on each, every text a sentinel; viewers U (USER on GA), R (USER on GB,
    revoked after making a connection and a run), S (no grant), X (an administrator
    until the role is removed) and D (USER on GA, deactivated)."""
    world = World()
    owner = make_user(roles=["ENVIRONMENT_MAKER"], premium=True)
    u, r, s, d = (make_user(roles=["DESKTOP_FLOWS_MACHINE_USER"]) for _ in range(4))
    x = make_user(roles=["SYSTEM_ADMINISTRATOR"])
    world.viewers = {"U": u, "R": r, "S": s, "X": x, "D": d}
    groups = {}
    for record in ("GA", "GB"):
        groups[record] = make_group(owner=owner, name=sentinel(record, "NAME"))
        _described(api, world, "MachineGroup", record, groups[record], owner)
    keys = {}
    for record, group in (("MA", "GA"), ("MB", "GB"), ("MS", None)):
        machine_id, keys[record] = make_machine(owner=owner, name=sentinel(record, "NAME"))
        _described(api, world, "Machine", record, machine_id, owner)
        if group:
            assert add_machine(api, machine_id, groups[group], as_=owner)["errors"] == []
    ca = _connection(api, world, "CA", owner, group_id=groups["GA"])
    cb = _connection(api, world, "CB", owner, group_id=groups["GB"])
    cs = _connection(api, world, "CS", owner, machine_id=world.ids["Machine"][2])
    # RA1 ran on MA and failed with an output and a reason; RB2 runs on MB now.
    _run(api, world, "RA1", ca, owner)
    ran = claimed(api, keys["MA"])
    assert ran is not None
    output = {"note": sentinel("RA1", "OUTPUT")}
    complete(api, keys["MA"], ran["id"], "FAILED", output=output, message=sentinel("RA1", "WHY"))
    _run(api, world, "RA2", ca, owner)
    _run(api, world, "RB1", cb, owner)
    assert claimed(api, keys["MB"]) is not None
    _run(api, world, "RB2", cb, owner)
    _run(api, world, "RS1", cs, owner)
    share_group(api, groups["GA"], u, "USER", as_=owner)
    _run(api, world, "RU", _connection(api, world, "CU", u, group_id=groups["GA"]), u)
    share_group(api, groups["GB"], r, "USER", as_=owner)
    _run(api, world, "RR", _connection(api, world, "CR", r, group_id=groups["GB"]), r)
    share_group(api, groups["GA"], d, "USER", as_=owner)
    world.sees = {
        "U": {"GA", "MA", "CA", "CU", "RA1", "RA2", "RU"},
        "R": {"CR", "RR"},
        "S": set(),
        "X": set(),
        "D": set(),
    }
    world.ids["name"] = [owner.name, u.name]
    return world


def _take_away(api: Api, admin: Account, world: World) -> None:
    """The revoke, the role removal and the deactivation the walk runs after."""
    group_b = world.ids["MachineGroup"][1]
    api.ok(REVOKE_GROUP, {"g": group_b, "u": world.viewers["R"].id}, as_=admin)
    api.ok(REMOVE_ADMIN, {"u": world.viewers["X"].id}, as_=admin)
    api.ok(DEACTIVATE, {"id": world.viewers["D"].id}, as_=admin)


def _walk(api: Api, admin: Account, world: World, roots: tuple[str, ...]) -> list[Probe]:
    """The probes of the walk, from the schema the server introspects, and the check that
    they reach every field leading to an object type."""
    schema = client_schema(api.data(INTROSPECTION, as_=admin))
    walk = Walk(schema, DEPTH)
    ids = {
        "id": [i for kind in ("MachineGroup", "Machine", "Run") for i in world.ids[kind]],
        "groupId": world.ids["MachineGroup"],
        "machineId": world.ids["Machine"],
        "recordId": world.ids["MachineGroup"] + world.ids["Machine"],
        "name": world.ids["name"],
        "agentId": ["walk-agent"],  # agentChannel: users are refused (a machine key's own)
    }
    probes: list[Probe] = []
    for root_name in roots:
        root = schema.get_type(root_name)
        assert isinstance(root, GraphQLObjectType)
        probes += walk.probes(root, ids)
    missing = walk.object_fields() - walk.reached
    assert not missing, f"the walk does not reach {sorted(missing)}"
    called = {probe.name.split("[")[0] for probe in probes}
    assert called == {
        name
        for root_name in roots
        for name in schema.get_type(root_name).fields  # type: ignore[union-attr]
    }, "every root field is probed"
    return probes


def _check(viewer: str, answers: dict[str, str], world: World) -> None:
    """No answer shows a record the viewer may not see; together they show all they may."""
    allowed = world.sees[viewer]
    for probe, text in answers.items():
        leaked = records_in(text) - allowed
        assert not leaked, f"{viewer} sees {sorted(leaked)} through {probe}: {text[:2000]}"
    shown = set().union(*(records_in(text) for text in answers.values()))
    assert shown == allowed, f"{viewer} should see exactly {sorted(allowed)}, saw {sorted(shown)}"


def _over_http(server: LiveServer, account: Account, probes: list[Probe]) -> dict[str, str]:
    answers = {}
    for probe in probes:
        response = server.post(probe.query, probe.variables, account.token)
        assert response.status_code in (200, 401), response.text
        answers[probe.name] = response.text
    return answers


def test_no_path_through_the_graph_shows_what_a_viewer_may_not_see(
    server: LiveServer, api: Api, admin: Account, world: World
) -> None:
    _take_away(api, admin, world)
    probes = _walk(api, admin, world, ("Query",))
    for viewer, account in world.viewers.items():
        answers = _over_http(server, account, probes)
        _check(viewer, answers, world)
        if viewer == "D":
            statuses = {server.post("{ me { name } }", None, account.token).status_code}
            assert statuses == {401}


@pytest.fixture
def sockets(server: LiveServer, world: World) -> Iterator[dict[str, GraphQLSocket]]:
    """A WebSocket per viewer, opened and acknowledged before anything is taken away."""
    opened = {}
    try:
        for viewer, account in world.viewers.items():
            opened[viewer] = GraphQLSocket(server.url, account.token)
            assert opened[viewer].acknowledged()
        yield opened
    finally:
        for socket in opened.values():
            socket.close()


def _over_socket(socket: GraphQLSocket, probes: list[Probe]) -> dict[str, str]:
    return {probe.name: socket.ask(probe.query, probe.variables, timeout=30) for probe in probes}


def test_sockets_opened_before_a_revoke_follow_it_on_every_path(
    api: Api, admin: Account, world: World, sockets: dict[str, GraphQLSocket]
) -> None:
    probes = _walk(api, admin, world, ("Query", "Subscription"))
    # Before: the administrator sees everything through the socket, R sees group GB.
    before = _over_socket(sockets["X"], probes)
    assert world.records <= set().union(*(records_in(text) for text in before.values()))
    assert "GB" in records_in(sockets["R"].ask("{ machineGroups { edges { node { name } } } }"))

    _take_away(api, admin, world)
    for viewer in ("U", "R", "S", "X"):
        _check(viewer, _over_socket(sockets[viewer], probes), world)
    # The deactivated user's socket is closed, saying why.
    with pytest.raises(ConnectionClosed) as closed:
        for _ in range(20):
            sockets["D"].ask("{ me { name } }", timeout=1)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 4403


def test_the_walk_reads_answers_that_hold_records(server: LiveServer, admin: Account) -> None:
    """The check itself can fail: an answer naming a record is read as showing it."""
    text = json.dumps({"data": {"run": {"flowName": sentinel("RB1", "FLOW")}}})
    assert records_in(text) == {"RB1"}
    body: dict[str, Any] = server.post("{ me { name } }", None, admin.token).json()
    assert records_in(json.dumps(body)) == set()
