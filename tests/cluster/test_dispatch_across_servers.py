"""Runs started through server A are claimed through servers A and B, each exactly once."""

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

RUNS = 500
AGENTS_PER_SERVER = 10
STARTERS = 4


def test_runs_started_on_one_server_are_claimed_through_both_exactly_once(
    start_cluster: StartCluster,
) -> None:
    cluster = start_cluster(MG_MAX_QUEUED_RUNS="1000")
    pool = make_pool(cluster, 2 * AGENTS_PER_SERVER)
    stop = threading.Event()
    # Half the agents long-poll server A, half server B; runs are only started through A.
    agents = [
        Agent(machine_id, key, [server.url], stop)
        for (machine_id, key), server in zip(
            pool.machines, [cluster.a, cluster.b] * AGENTS_PER_SERVER, strict=True
        )
    ]
    starters = [
        Starter(cluster.admin_token, pool.connection_id, [cluster.a.url], range(i, RUNS, STARTERS))
        for i in range(STARTERS)
    ]
    try:
        for thread in [*agents, *starters]:
            thread.start()
        join_all(starters, timeout=120)

        def completed() -> int:
            return sum(len(agent.completed) for agent in agents)

        wait_until(
            lambda: completed() >= RUNS or any(a.errors for a in agents),
            timeout=120,
            what=f"the agents completed {RUNS} runs (so far {completed()})",
        )
    finally:
        stop.set()
        join_all(agents, timeout=30)

    assert [error for s in starters for error in s.errors] == []
    assert [error for a in agents for error in a.errors] == []
    assert [failure for a in agents for failure in a.failovers] == []
    acknowledged = {run_id for s in starters for run_id, _ in s.acknowledged}
    assert len(acknowledged) == RUNS

    runs = assert_each_run_once(cluster, agents)
    assert set(runs) == acknowledged
    # Each completed exactly once: one acknowledged completion per run, none refused.
    completions = [run_id for a in agents for run_id, _ in a.completed]
    assert sorted(completions) == sorted(acknowledged)
    assert [run_id for a in agents for run_id in a.completed_unacknowledged] == []
    through_b = [run_id for a in agents for run_id, url in a.completed if url == cluster.b.url]
    # Runs started through A reach B's agents: a fair share (half, give or take) goes there.
    assert len(through_b) >= RUNS // 10, f"only {len(through_b)} runs were claimed through B"
    assert len(through_b) <= RUNS - RUNS // 10, f"only {RUNS - len(through_b)} went through A"
    assert cluster.error_entries() == []
