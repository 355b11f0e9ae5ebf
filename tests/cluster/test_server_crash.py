"""SIGKILL of server A under load: no acknowledged run is lost, and A's agents go on via B."""

from __future__ import annotations

import threading

import pytest

from tests.cluster.cluster_helpers import (
    Agent,
    Starter,
    assert_each_run_once,
    join_all,
    make_pool,
    wait_until,
)
from tests.cluster.conftest import StartCluster

pytestmark = pytest.mark.postgres_only

RUNS = 200
AGENTS_PER_SERVER = 10
STARTERS = 4
# Kill A once this many runs were acknowledged and some were completed.
KILL_AFTER_ACKNOWLEDGED = 80
KILL_AFTER_COMPLETED = 20


def test_killing_a_server_mid_load_loses_no_acknowledged_run(
    start_cluster: StartCluster,
) -> None:
    cluster = start_cluster(MG_MAX_QUEUED_RUNS="1000")
    pool = make_pool(cluster, 2 * AGENTS_PER_SERVER)
    a, b = cluster.a, cluster.b
    stop = threading.Event()
    # Each agent knows both servers, its own first; runs are started through A.
    agents = [
        Agent(machine_id, key, [home.url, other.url], stop)
        for (machine_id, key), (home, other) in zip(
            pool.machines, [(a, b), (b, a)] * AGENTS_PER_SERVER, strict=True
        )
    ]
    agents_of_a = agents[0::2]
    starters = [
        Starter(cluster.admin_token, pool.connection_id, [a.url, b.url], range(i, RUNS, STARTERS))
        for i in range(STARTERS)
    ]

    def acknowledged() -> list[tuple[str, str]]:
        return [entry for starter in starters for entry in list(starter.acknowledged)]

    def completed() -> int:
        return sum(len(agent.completed) for agent in agents)

    try:
        for thread in [*agents, *starters]:
            thread.start()
        wait_until(
            lambda: (
                len(acknowledged()) >= KILL_AFTER_ACKNOWLEDGED
                and completed() >= KILL_AFTER_COMPLETED
            ),
            timeout=120,
            what="runs were started and completed through A",
            interval=0.02,
        )
        a.kill()
        # The agents' work after this point; before it, all went through A or B normally.
        completed_before_kill = {agent.machine_id: len(agent.completed) for agent in agents}
        join_all(starters, timeout=120)
        expected = {run_id for run_id, _ in acknowledged()}

        def done() -> bool:
            runs = cluster.runs()
            return all(r["status"] not in ("QUEUED", "RUNNING") for r in runs.values())

        wait_until(
            lambda: any(agent.errors for agent in agents) or done(),
            timeout=120,
            what="every run ended",
            interval=0.5,
        )
    finally:
        stop.set()
        join_all(agents, timeout=30)

    assert [error for s in starters for error in s.errors] == []
    assert [error for agent in agents for error in agent.errors] == []
    through_a = [run_id for run_id, url in acknowledged() if url == a.url]
    through_b = [run_id for run_id, url in acknowledged() if url == b.url]
    assert len(through_a) >= KILL_AFTER_ACKNOWLEDGED and through_b, "A was not killed mid-load"

    runs = assert_each_run_once(cluster, agents)
    lost = expected - set(runs)
    assert not lost, f"{len(lost)} acknowledged run(s) are not in the database: {lost}"
    # Every acknowledged run SUCCEEDED (checked above, with exactly one machine each); a
    # run whose startRun answer was lost with A may exist too, and succeeded like the rest.
    assert len(runs) - len(expected) <= STARTERS
    for agent in agents_of_a:
        assert agent.failovers, f"agent {agent.machine_id} never noticed that A was gone"
        on_b = [
            run_id for run_id, url in agent.completed[completed_before_kill[agent.machine_id] :]
        ]
        assert on_b, f"agent {agent.machine_id} completed no run after A died"
        assert all(
            url == b.url for _, url in agent.completed[completed_before_kill[agent.machine_id] :]
        )
    for agent in agents[1::2]:
        assert agent.failovers == [], f"B's agent {agent.machine_id} lost B"
    assert b.error_entries() == []
