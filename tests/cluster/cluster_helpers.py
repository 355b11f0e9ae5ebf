"""Two `machine-groups serve` processes on one PostgreSQL database, and clients for them.

Agents here are HTTP long-poll clients in threads: each claims, "runs" the run at once
and completes it. On a connection error an agent moves to the next server URL it knows
and carries on; when the lost answer was a claim's it asks the server (heartbeat) whether
that claim granted it a run, and completes that run, since it never started it. Every wait
has a deadline.
"""

from __future__ import annotations

import asyncio
import threading
import time
import traceback
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from app.queue.pg_events import asyncpg_dsn
from tests.processes import (
    CLAIM,
    COMPLETE,
    HEARTBEAT,
    START_RUN,
    START_SECONDS,
    Caller,
    ServerProcess,
    codes,
    graphql_request,
    payload_of,
    premium_admin,
)

SECRET = "cluster-test-secret-key-0123456789abcdef0123456789"
GROUP_PASSWORD = "a long cluster group secret"


def query_database(database_url: str, sql: str, *args: Any) -> list[asyncpg.Record]:
    """Rows of one SQL statement, read straight from the PostgreSQL database."""

    async def fetch() -> list[asyncpg.Record]:
        connection = await asyncpg.connect(asyncpg_dsn(database_url))
        try:
            rows: list[asyncpg.Record] = await connection.fetch(sql, *args)
            return rows
        finally:
            await connection.close()

    return asyncio.run(fetch())


def cluster_server(
    name: str, folder: Path, database_url: str, settings: dict[str, str]
) -> ServerProcess:
    """Server `name` of a cluster on the shared database, ready once /readyz answers 200."""
    return ServerProcess(
        folder, database_url, SECRET, name=name, ready_path="/readyz", settings=settings
    )


@dataclass
class Cluster:
    """Two servers, A and B, on one database, and the admin's token."""

    database_url: str
    a: ServerProcess
    b: ServerProcess
    admin_token: str = ""
    http: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=60))

    def caller(self, server: ServerProcess, token: str | None = None) -> Caller:
        """GraphQL to `server` as the admin, or as `token` (a machine key) when given."""
        return Caller(self.http, server.url, token or self.admin_token)

    def ok(
        self, server: ServerProcess, query: str, token: str | None = None, **variables: Any
    ) -> dict[str, Any]:
        """The payload of a mutation that must succeed, as the admin unless `token` is given."""
        return self.caller(server, token).ok(query, **variables)

    def rows(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        """Rows read straight from the shared database."""
        return query_database(self.database_url, sql, *args)

    def runs(self) -> dict[str, asyncpg.Record]:
        """Every run in the database, by id."""
        rows = self.rows(
            "SELECT id, status, machine_id, started_at, finished_at, failure_reason FROM runs"
        )
        return {row["id"]: row for row in rows}

    def error_entries(self) -> list[dict[str, Any]]:
        """Error-level log entries of both servers."""
        return self.a.error_entries() + self.b.error_entries()


def start(cluster: Cluster) -> None:
    """Launch both servers together (they migrate the database together too), wait for
    them, and give the admin a token and the premium licence."""
    for server in (cluster.a, cluster.b):
        server.launch()
    deadline = time.monotonic() + START_SECONDS
    for server in (cluster.a, cluster.b):
        server.wait_ready(deadline)
    cluster.admin_token = premium_admin(cluster.a, cluster.http).token


@dataclass
class Pool:
    """A group, its machines as (id, key), and a connection that starts runs in it."""

    group_id: str
    connection_id: str
    machines: list[tuple[str, str]]


def make_pool(cluster: Cluster, machines: int) -> Pool:
    """A group of `machines` machines and a connection to it.

    The group is made through A and its first machine joins through the API, which sets
    the group password. Checking that password is slow on purpose (Argon2) and holds the
    group's row, so joining 20 machines through the API takes seconds on a busy machine:
    the others, registered through A and B in turn, join in the database in one UPDATE
    (fresh machines without connections, before any agent runs: nothing else changes).
    """
    admin = cluster.caller(cluster.a)
    group = admin.create_group("cluster")
    first = admin.register_machine("VM-000")
    admin.add_to_group(first[0], group, GROUP_PASSWORD)

    def register(number: int) -> tuple[str, str]:
        server = (cluster.a, cluster.b)[number % 2]
        return cluster.caller(server).register_machine(f"VM-{number:03d}")

    with ThreadPoolExecutor(4) as executor:
        others = list(executor.map(register, range(1, machines)))
    cluster.rows(
        "UPDATE machines SET group_id = $1 WHERE id = ANY($2::text[])",
        group,
        [machine_id for machine_id, _ in others],
    )
    connection = admin.create_connection(group, "robot", "Pa55word-on-the-VM!")
    (count,) = cluster.rows("SELECT count(*) FROM machines WHERE group_id = $1", group)
    assert count[0] == machines
    return Pool(group, connection, [first, *others])


class _Lost(Exception):
    """A request got no answer (connection refused, reset, or closed mid-request)."""


class _Failover:
    """GraphQL over HTTP to the first of several server URLs; on a connection error it
    moves to the next one and raises `_Lost`."""

    def __init__(self, token: str, urls: Sequence[str]) -> None:
        self.token = token
        self.urls = list(urls)
        self.current = 0
        self.failovers: list[str] = []
        self.http = httpx.Client(timeout=60)

    @property
    def url(self) -> str:
        """The server URL in use."""
        return self.urls[self.current]

    def call(self, query: str, **variables: Any) -> dict[str, Any]:
        url = self.url
        try:
            response = self.http.post(url, **graphql_request(self.token, query, variables))
        except httpx.TransportError as error:
            self.current = (self.current + 1) % len(self.urls)
            self.failovers.append(f"{url}: {error!r}")
            raise _Lost from error
        return payload_of(response)

    def close(self) -> None:
        self.http.close()


class Agent(threading.Thread):
    """A machine's agent: long-polls claimNextRun and completes each run it gets at once."""

    def __init__(
        self,
        machine_id: str,
        key: str,
        urls: Sequence[str],
        stop: threading.Event,
        wait_seconds: int = 2,
    ) -> None:
        super().__init__(daemon=True, name=f"agent-{machine_id}")
        self.machine_id = machine_id
        self.stop = stop
        self.wait_seconds = wait_seconds
        self.client = _Failover(key, urls)
        # Runs this agent was granted: by a claim's answer, or found after a lost answer.
        self.claimed: list[str] = []
        # (run id, URL of the server that acknowledged the completion).
        self.completed: list[tuple[str, str]] = []
        # Completions whose answer was lost and whose retry found the run already ended.
        self.completed_unacknowledged: list[str] = []
        self.errors: list[str] = []

    @property
    def failovers(self) -> list[str]:
        """Connection errors met, each followed by a move to the next server."""
        return self.client.failovers

    def run(self) -> None:
        try:
            self._work()
        except Exception:  # reported to the test, which fails on any error
            self.errors.append(traceback.format_exc())
        finally:
            self.client.close()

    def _work(self) -> None:
        check_held = False
        while not self.stop.is_set():
            try:
                if check_held:
                    # The answer to a claim was lost: did that claim grant a run?
                    held = self.client.call(HEARTBEAT)["machine"]["currentRun"]
                    check_held = False
                    if held is not None:
                        self.claimed.append(held["id"])
                        self._complete(held["id"])
                        continue
                payload = self.client.call(CLAIM, w=self.wait_seconds)
            except _Lost:
                check_held = True
                time.sleep(0.05)
                continue
            if codes(payload):
                self.errors.append(f"claimNextRun answered {payload['errors']}")
                time.sleep(0.2)
                continue
            if payload["run"] is not None:
                self.claimed.append(payload["run"]["id"])
                self._complete(payload["run"]["id"])

    def _complete(self, run_id: str) -> None:
        answer_lost = False
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            url = self.client.url
            try:
                payload = self.client.call(COMPLETE, id=run_id)
            except _Lost:
                answer_lost = True
                time.sleep(0.05)
                continue
            found = codes(payload)
            if not found:
                self.completed.append((run_id, url))
            elif answer_lost and found == ["RUN_NOT_ACTIVE"]:
                self.completed_unacknowledged.append(run_id)
            else:
                self.errors.append(f"completeRun {run_id} answered {payload['errors']}")
            return
        self.errors.append(f"completeRun {run_id} reached no server within 60 s")


class Starter(threading.Thread):
    """Starts runs numbered `numbers` through the first of `urls` (the next on errors)."""

    def __init__(
        self, token: str, connection_id: str, urls: Sequence[str], numbers: Iterable[int]
    ) -> None:
        super().__init__(daemon=True)
        self.connection_id = connection_id
        self.numbers = list(numbers)
        self.client = _Failover(token, urls)
        # (run id, URL of the server that acknowledged it), in the order acknowledged.
        self.acknowledged: list[tuple[str, str]] = []
        self.errors: list[str] = []

    def run(self) -> None:
        try:
            for number in self.numbers:
                url = self.client.url
                try:
                    payload = self.client.call(START_RUN, c=self.connection_id, f=f"flow-{number}")
                except _Lost:
                    continue  # not acknowledged: the run may or may not exist
                if codes(payload):
                    self.errors.append(f"startRun answered {payload['errors']}")
                else:
                    self.acknowledged.append((payload["run"]["id"], url))
        except Exception:
            self.errors.append(traceback.format_exc())
        finally:
            self.client.close()


def wait_until(condition: Any, timeout: float, what: str, interval: float = 0.2) -> None:
    """Poll `condition()` until true; fail naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting until {what}")
        time.sleep(interval)


def join_all(threads: Iterable[threading.Thread], timeout: float = 30.0) -> None:
    """Join threads with one deadline for all; fail if any is still running."""
    deadline = time.monotonic() + timeout
    alive = []
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
        if thread.is_alive():
            alive.append(thread.name)
    assert not alive, f"threads still running after {timeout:.0f} s: {alive}"


def assert_each_run_once(cluster: Cluster, agents: Sequence[Agent]) -> dict[str, asyncpg.Record]:
    """Every run in the database SUCCEEDED, on the machine of the one agent granted it,
    and no machine held two runs at once. Returns the runs."""
    runs = cluster.runs()
    granted: dict[str, str] = {}
    for agent in agents:
        for run_id in agent.claimed:
            assert run_id not in granted, (
                f"run {run_id} was granted to machine {granted[run_id]} and {agent.machine_id}"
            )
            granted[run_id] = agent.machine_id
    not_succeeded = {i: r["status"] for i, r in runs.items() if r["status"] != "SUCCEEDED"}
    assert not not_succeeded, f"runs that did not succeed: {not_succeeded}"
    assert set(granted) == set(runs), (
        f"runs no agent was granted: {set(runs) - set(granted)};"
        f" granted runs not in the database: {set(granted) - set(runs)}"
    )
    for run_id, row in runs.items():
        assert row["machine_id"] == granted[run_id], (run_id, row["machine_id"], granted[run_id])
        assert row["started_at"] is not None and row["finished_at"] is not None, dict(row)
    by_machine: dict[str, list[asyncpg.Record]] = {}
    for row in runs.values():
        by_machine.setdefault(row["machine_id"], []).append(row)
    for machine_id, held in by_machine.items():
        held.sort(key=lambda row: row["started_at"])
        for before, after in pairwise(held):
            assert before["finished_at"] <= after["started_at"], (
                f"machine {machine_id} held runs {before['id']} and {after['id']} at once"
            )
    return runs
