"""Exactly once under concurrency: 20 agents drain 500 runs started while they claim.

Twenty machines, each with its own key, are spread over three groups; every agent loops
`claimNextRun(waitSeconds: 1)` then `completeRun(SUCCEEDED)` while other tasks start
500 runs through one connection per group. The verdict comes from the database, not
from the responses: every run succeeded exactly once, on a machine of its own group,
and no machine ever held two runs at the same time.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from app.db.models import Machine, Run
from app.domain.clock import ManualClock, as_utc
from app.settings import Settings
from tests.api.conftest import Account, Api
from tests.api.helpers import add_machine
from tests.processes import (
    CLAIM,
    COMPLETE,
    CREATE_CONNECTION,
    START_RUN,
    Acknowledged,
    graphql_request,
    payload_of,
)
from tests.server import LiveServer

GROUPS = 3
MACHINES = 20
RUNS = 500
STARTERS = 4
DEADLINE_SECONDS = 90.0  # a bound against hangs; the drive takes 20-40 s on 2 busy cores


class RealClock(ManualClock):
    """The wall clock, so that each run's started and finished times are distinct moments."""

    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""
        return datetime.now(UTC)


@pytest.fixture
def clock() -> ManualClock:
    """Real time for this module: run intervals are compared, so time must move."""
    return RealClock()


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """Room for the whole load in any one queue."""
    return dataclasses.replace(settings, max_queued_runs=2 * RUNS)


async def _post(
    client: httpx.AsyncClient, url: str, token: str, query: str, variables: dict[str, Any]
) -> dict[str, Any]:
    """The payload of one request (see payload_of)."""
    return payload_of(await client.post(url, **graphql_request(token, query, variables)))


async def _drive(
    url: str,
    admin_token: str,
    connections: list[str],
    agents: list[tuple[str, str]],
) -> Acknowledged:
    """Start the runs and claim them at once; returns what was acknowledged."""
    load = Acknowledged()
    deadline = time.monotonic() + DEADLINE_SECONDS
    limits = httpx.Limits(max_connections=MACHINES + STARTERS + 4)
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:

        async def starter(index: int) -> None:
            for number in range(index, RUNS, STARTERS):
                payload = await _post(
                    client,
                    url,
                    admin_token,
                    START_RUN,
                    {"c": connections[number % len(connections)], "f": f"flow-{number}"},
                )
                if payload["errors"] or payload["run"] is None:
                    load.problems.append(f"startRun {number}: {payload['errors']}")
                    continue
                load.started.append(payload["run"]["id"])

        async def agent(machine_id: str, key: str) -> None:
            while len(load.completed) < RUNS and time.monotonic() < deadline:
                claimed = await _post(client, url, key, CLAIM, {"w": 1})
                run_id = load.claimed(machine_id, claimed)
                if run_id is None:
                    continue
                if claimed["run"]["status"] != "RUNNING":
                    load.problems.append(f"claimed {run_id} is {claimed['run']['status']}")
                done = await _post(client, url, key, COMPLETE, {"id": run_id})
                if done["errors"] or done["run"]["status"] != "SUCCEEDED":
                    load.problems.append(f"completeRun {run_id} by {machine_id}: {done}")
                    continue
                load.completed.append(run_id)

        tasks = [agent(machine_id, key) for machine_id, key in agents]
        tasks += [starter(index) for index in range(STARTERS)]
        await asyncio.gather(*tasks)
    return load


def _runs_and_groups(server: LiveServer) -> tuple[list[Run], dict[str, str | None]]:
    async def read() -> tuple[list[Run], dict[str, str | None]]:
        async with server.state.db.read() as session:
            runs = list(await session.scalars(select(Run)))
            machines = {m.id: m.group_id for m in await session.scalars(select(Machine))}
            return runs, machines

    return server.run(read())


def test_every_run_succeeds_exactly_once_and_no_machine_holds_two_runs(
    server: LiveServer,
    api: Api,
    admin: Account,
    make_group: Callable[..., str],
    make_machine: Callable[..., tuple[str, str]],
) -> None:
    groups = [make_group() for _ in range(GROUPS)]
    agents = [make_machine() for _ in range(MACHINES)]
    for index, (machine_id, _key) in enumerate(agents):
        added = add_machine(api, machine_id, groups[index % GROUPS], as_=admin)
        assert added["errors"] == [], added["errors"]
    connections = []
    for n, group_id in enumerate(groups):
        created = api.ok(CREATE_CONNECTION, {"g": group_id, "n": f"conn {n}", "p": "pw"}, as_=admin)
        connections.append(created["connection"]["id"])

    began = time.monotonic()
    load = asyncio.run(_drive(server.url, admin.token, connections, agents))
    elapsed = time.monotonic() - began

    assert load.problems == []
    assert len(load.started) == RUNS
    assert len(load.completed) == RUNS, f"{len(load.completed)} of {RUNS} in {elapsed:.1f} s"
    # No run id was ever handed out twice, and every claim was of a started run.
    handed_out = Counter(run_id for _machine, run_id in load.claims)
    assert [run_id for run_id, times in handed_out.items() if times > 1] == []
    assert set(handed_out) == set(load.started)

    runs, group_of = _runs_and_groups(server)
    assert len(runs) == RUNS
    assert {run.id for run in runs} == set(load.started)
    assert Counter(run.status for run in runs) == {"SUCCEEDED": RUNS}
    held: defaultdict[str, list[tuple[datetime, datetime]]] = defaultdict(list)
    for run in runs:
        assert run.machine_id is not None, run.id
        assert run.started_at is not None and run.finished_at is not None, run.id
        started, finished = as_utc(run.started_at), as_utc(run.finished_at)
        assert started <= finished, run.id
        assert group_of[run.machine_id] == run.group_id, "a machine ran another group's run"
        held[run.machine_id].append((started, finished))
    # The database agrees with the claims on who ran what.
    claimed_by = dict((run_id, machine_id) for machine_id, run_id in load.claims)
    assert {run.id: run.machine_id for run in runs} == claimed_by
    for machine_id, intervals in held.items():
        intervals.sort()
        for (_, finished), (started, _) in itertools.pairwise(intervals):
            assert started >= finished, f"machine {machine_id} held two runs at once"
    # The load was shared: more than a handful of machines did work.
    assert len(held) > MACHINES // 2
