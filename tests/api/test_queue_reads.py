"""Queue positions and start estimates cost a constant number of statements per list, equal
their definitions, and the heavy query of issue #13 is refused before it reads anything.

Everything is built through the API on one server for the module (its tests only read):
a group of three machines with 22 finished runs of known durations, one running and 150
queued at mixed priorities (some changed afterwards), and a standalone machine with a
queue of its own. Time is the module's ManualClock, so every estimate is exact.
"""

from __future__ import annotations

import statistics
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest

from app.domain.clock import ManualClock
from app.settings import Settings
from tests.api.conftest import Account, Api
from tests.api.hardening_helpers import admin_account
from tests.api.helpers import CREATE_GROUP, REGISTER
from tests.api.queue_helpers import (
    SET_PRIORITY,
    add_machine,
    claimed,
    complete,
    connection_id,
    heartbeat,
    started,
)
from tests.api.statements import StatementLog
from tests.conftest import POLICIES
from tests.databases import fresh_database
from tests.server import LiveServer

QUEUED = 150
HISTORY = 22  # finished runs of the group, run i lasting 10 * i seconds
RANK = {"HIGH": 0, "NORMAL": 1, "LOW": 2}

QUEUE = """
query($g: ID!, $n: Int) {
  machineGroup(id: $g) { queue(first: $n) { id priority queuePosition estimatedStartAt } }
}"""
QUEUED_RUNS = """
query($n: Int) {
  runs(first: $n, status: [QUEUED]) { edges { node { id queuePosition estimatedStartAt } } }
}"""
HEAVY = """
query($g: ID!) {
  runs(groupId: $g, first: 100) { edges { node { group {
    queue(first: 100) { id queuePosition estimatedStartAt } } } } }
}"""


@dataclass
class Queue:
    """One queue as the test built it: what its definitions say positions and estimates are."""

    machines: int
    running: int
    average: float  # seconds: the mean of its last 20 finished runs
    runs: list[tuple[str, str]] = field(default_factory=list)  # (run id, priority) queued

    def order(self) -> list[str]:
        """The queued runs in dispatch order: HIGH, NORMAL, LOW, then first in first out."""
        ranked = sorted(enumerate(self.runs), key=lambda item: (RANK[item[1][1]], item[0]))
        return [run_id for _index, (run_id, _priority) in ranked]

    def expected(self, now: datetime) -> dict[str, tuple[int, datetime]]:
        """Each queued run's (position, estimated start)."""
        return {
            run_id: (position, now + timedelta(seconds=self.wait(position)))
            for position, run_id in enumerate(self.order(), start=1)
        }

    def wait(self, position: int) -> float:
        """Waves of work ahead of the run across the machines, times the average run."""
        return (position - 1 + self.running) // self.machines * self.average


@dataclass
class World:
    server: LiveServer
    admin: Account
    group_id: str
    group: Queue
    machine: Queue

    @property
    def api(self) -> Api:
        """A GraphQL client for the server."""
        return Api(self.server)

    def expected(self) -> dict[str, tuple[int, datetime]]:
        """Every queued run's (position, estimated start), both queues."""
        now = self.server.clock.now()
        return {**self.group.expected(now), **self.machine.expected(now)}


def _machine(api: Api, admin: Account, name: str) -> tuple[str, str]:
    payload = api.ok(REGISTER, {"n": name}, as_=admin)
    return payload["machine"]["id"], payload["machineKey"]


def _history(
    api: Api, clock: ManualClock, key: str, conn: str, admin: Account, *seconds: int
) -> None:
    """Runs of the given durations, each started, claimed by `key`'s machine and finished."""
    for duration in seconds:
        run_id = started(api, conn, as_=admin)["id"]
        held = claimed(api, key)
        assert held is not None and held["id"] == run_id
        clock.advance(duration)
        assert complete(api, key, run_id)["errors"] == []


def _build(server: LiveServer) -> World:
    api, clock = Api(server), server.clock
    admin = admin_account(server)
    api.ok(
        "mutation($id: ID!) { setUserPremium(userId: $id, premium: true) { errors { code } } }",
        {"id": admin.id},
        as_=admin,
    )
    group_id = api.ok(CREATE_GROUP, {"n": "Finance bots"}, as_=admin)["machineGroup"]["id"]
    keys = []
    for number in range(3):
        machine_id, key = _machine(api, admin, f"FIN-VM-{number}")
        assert add_machine(api, machine_id, group_id, as_=admin)["errors"] == []
        heartbeat(api, key)
        keys.append(key)
    to_group = connection_id(api, as_=admin, group_id=group_id)
    _history(api, clock, keys[0], to_group, admin, *(10 * i for i in range(1, HISTORY + 1)))
    # The last 20 finished: 30 s to 220 s.
    group = Queue(machines=3, running=1, average=statistics.mean(range(30, 230, 10)))
    started(api, to_group, as_=admin)
    assert claimed(api, keys[1]) is not None  # running from now on

    standalone, own_key = _machine(api, admin, "LONE-VM")
    heartbeat(api, own_key)
    to_machine = connection_id(api, as_=admin, machine_id=standalone)
    _history(api, clock, own_key, to_machine, admin, 40, 80)
    machine = Queue(machines=1, running=1, average=60)
    started(api, to_machine, as_=admin)
    assert claimed(api, own_key) is not None

    priorities = ("LOW", "NORMAL", "HIGH")
    for index in range(QUEUED):
        clock.advance(1)
        priority = priorities[index % 3]
        group.runs.append((started(api, to_group, as_=admin, priority=priority)["id"], priority))
        if index % 50 == 49:  # the standalone machine's runs, the newest of all among them
            run_id = started(api, to_machine, as_=admin, priority=priority)["id"]
            machine.runs.append((run_id, priority))
    # Re-prioritised runs keep their enqueue time within their new priority.
    for index in range(0, QUEUED, 10):
        run_id, old = group.runs[index]
        new = "HIGH" if old != "HIGH" else "LOW"
        api.ok(SET_PRIORITY, {"id": run_id, "p": new}, as_=admin)
        group.runs[index] = (run_id, new)
    return World(server, admin, group_id, group, machine)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """One server and one database for the module: its tests only read."""
    with fresh_database(tmp_path_factory.mktemp("queue-reads")) as database_url:
        settings = Settings(
            database_url=database_url,
            secret_keys=("test-secret-key-0123456789abcdef0123456789",),
            policy_dir=POLICIES,
            sweep_interval=3600,  # the clock jumps minutes: no sweeper here
        )
        server = LiveServer(settings, ManualClock()).start()
        try:
            yield _build(server)
        finally:
            server.stop()


def _moment(value: str) -> datetime:
    return datetime.fromisoformat(value)


def test_a_groups_queue_costs_the_same_statements_for_5_runs_or_100(world: World) -> None:
    log = StatementLog(world.server, QUEUE)
    counts = {}
    expected = world.expected()
    for first in (5, 100):
        counts[first], data = log.count(world.api, {"g": world.group_id, "n": first}, world.admin)
        queue = data["machineGroup"]["queue"]
        assert [run["id"] for run in queue] == world.group.order()[:first]
        for run in queue:
            position, start = expected[run["id"]]
            assert run["queuePosition"] == position
            assert _moment(run["estimatedStartAt"]) == start
    assert counts[5] == counts[100], log.statements
    # Authentication, the group, its queue, the positions, the history, the machines and
    # running runs: one statement each.
    assert len(log.queries) <= 8, log.queries


def test_a_page_of_runs_costs_the_same_statements_for_5_runs_or_100(world: World) -> None:
    log = StatementLog(world.server, QUEUED_RUNS)
    counts = {}
    expected = world.expected()
    for first in (5, 100):
        counts[first], data = log.count(world.api, {"n": first}, world.admin)
        nodes = [edge["node"] for edge in data["runs"]["edges"]]
        assert len(nodes) == first
        # Both kinds of queue are on both pages (the machine's runs are among the newest).
        machine_runs = {run_id for run_id, _priority in world.machine.runs}
        assert machine_runs & {node["id"] for node in nodes}
        for node in nodes:
            position, start = expected[node["id"]]
            assert (node["queuePosition"], _moment(node["estimatedStartAt"])) == (position, start)
    assert counts[5] == counts[100], log.statements
    assert len(log.queries) <= 8, log.queries


def test_positions_follow_priority_changes_and_estimates_the_recent_history(world: World) -> None:
    data = world.api.data(QUEUE, {"g": world.group_id, "n": 100}, as_=world.admin)
    queue = data["machineGroup"]["queue"]
    assert [run["queuePosition"] for run in queue] == list(range(1, 101))
    priorities = [run["priority"] for run in queue]
    assert priorities == sorted(priorities, key=RANK.__getitem__)
    now = world.server.clock.now()
    # One run is running on three machines: the first two queued start now, the next
    # three after one average run (125 s: the last 20 of 22 finished runs), and so on.
    starts = [_moment(run["estimatedStartAt"]) - now for run in queue[:6]]
    wave = timedelta(seconds=125)
    assert starts == [timedelta(0)] * 2 + [wave] * 3 + [2 * wave]
    # Runs that left the queue have neither.
    history = world.api.data(
        "{ runs(first: 5, status: [SUCCEEDED, RUNNING]) { edges { node {"
        " queuePosition estimatedStartAt } } } }",
        as_=world.admin,
    )
    nodes = [edge["node"] for edge in history["runs"]["edges"]]
    assert nodes and all(
        node == {"queuePosition": None, "estimatedStartAt": None} for node in nodes
    )


class Probes:
    """`{ __typename }` requests sent one after another from a thread of their own."""

    def __init__(self, server: LiveServer, token: str) -> None:
        self._client = httpx.Client(timeout=60)
        self._url, self._token = server.url, token
        self._stop = threading.Event()
        self.answers: list[Any] = []
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            response = self._client.post(
                self._url,
                json={"query": "{ __typename }"},
                headers={"Authorization": f"Bearer {self._token}"},
            )
            self.answers.append(response.json())
            self._stop.wait(0.01)

    def __enter__(self) -> Probes:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._client.close()


def _post(server: LiveServer, token: str, query: str, variables: dict[str, Any]) -> Any:
    with httpx.Client(timeout=60) as client:
        response = client.post(
            server.url,
            json={"query": query, "variables": variables},
            headers={"Authorization": f"Bearer {token}"},
        )
        return response.json()


def test_the_heavy_query_of_issue_13_is_refused_before_it_reads_a_run(world: World) -> None:
    """10,000 positions and estimates (23 s before the cost rule priced them) cost no read."""
    log = StatementLog(world.server, HEAVY)
    with log.watch():
        body = world.api.execute(HEAVY, {"g": world.group_id}, as_=world.admin)
    (error,) = body["errors"]
    assert (body["data"], error["extensions"]["code"]) == (None, "QUERY_TOO_COSTLY")
    assert not [query for query in log.queries if "runs" in query], log.queries


def test_three_queue_pages_at_once_are_answered_in_full_beside_trivial_requests(
    world: World,
) -> None:
    """Three of the accepted queue pages in parallel, as in the issue: no request is
    refused or cut (SERVICE_BUSY, the deadline) while probes are sent from another thread.
    Their cost is asserted as statements above, not as time on a shared machine."""
    token = world.admin.token
    variables = {"g": world.group_id, "n": 100}
    with Probes(world.server, token) as probes, ThreadPoolExecutor(3) as pool:
        answers = list(pool.map(lambda _i: _post(world.server, token, QUEUE, variables), range(3)))
    order = world.group.order()[:100]
    for body in answers:
        assert "errors" not in body, body["errors"]
        assert [run["id"] for run in body["data"]["machineGroup"]["queue"]] == order
    assert probes.answers
    assert all(answer == {"data": {"__typename": "Query"}} for answer in probes.answers)
