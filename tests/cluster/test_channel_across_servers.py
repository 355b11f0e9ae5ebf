"""The agent channel with two servers on one database: the agent's socket on B, runs
started and cancelled through A, and each way "at most once" could break.

Agents here are raw graphql-transport-ws clients (tests/api/channel_helpers.py), so the
test decides exactly when a socket dies: before a confirmation, after it, with its
server killed.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.api.channel_helpers import AgentSocket
from tests.cluster.cluster_helpers import Cluster, Pool, make_pool, wait_until
from tests.cluster.conftest import StartCluster
from tests.processes import CANCEL_RUN, START_RUN

pytestmark = pytest.mark.postgres_only


def start(cluster: Cluster, pool: Pool, flow: str = "flow") -> str:
    """A run started through server A: its id."""
    payload = cluster.ok(cluster.a, START_RUN, c=pool.connection_id, f=flow)
    run_id: str = payload["run"]["id"]
    return run_id


def row(cluster: Cluster, run_id: str) -> dict[str, Any]:
    (found,) = cluster.rows(
        "SELECT status, machine_id, confirmed_at, failure_reason FROM runs WHERE id = $1", run_id
    )
    return dict(found)


def channel(url: str, key: str, agent_id: str = "agent-1") -> AgentSocket:
    opened = AgentSocket(url, key, agent_id)
    assert opened.next()["kind"] == "READY"
    return opened


def test_a_run_started_on_a_is_pushed_to_the_agent_on_b_and_so_is_its_cancel(
    start_cluster: StartCluster,
) -> None:
    cluster = start_cluster()
    pool = make_pool(cluster, 1)
    ((_machine, key),) = pool.machines
    on_b = channel(cluster.b.url, key)
    run_id = start(cluster, pool)
    offered = on_b.next()
    assert (offered["kind"], offered["runId"]) == ("RUN", run_id)
    assert on_b.confirm(run_id)["errors"] == []
    began = time.monotonic()
    cluster.ok(cluster.a, CANCEL_RUN, id=run_id)
    ended = on_b.next()
    assert time.monotonic() - began < 1.0
    assert (ended["kind"], ended["run"]["status"]) == ("RUN_ENDED", "CANCELLED")
    on_b.close()
    assert cluster.error_entries() == []


def test_a_socket_that_dies_before_confirming_returns_the_run_and_another_machine_runs_it(
    start_cluster: StartCluster,
) -> None:
    cluster = start_cluster()
    pool = make_pool(cluster, 2)
    (first, first_key), (second, second_key) = pool.machines
    on_b = channel(cluster.b.url, first_key)
    run_id = start(cluster, pool)
    assert on_b.next()["runId"] == run_id
    on_b.close()  # pushed, never confirmed
    wait_until(lambda: row(cluster, run_id)["status"] == "QUEUED", 5, "the run is queued again")
    on_a = channel(cluster.a.url, second_key)
    assert on_a.next()["runId"] == run_id
    assert on_a.confirm(run_id)["errors"] == []
    assert row(cluster, run_id)["machine_id"] == second
    on_a.close()
    assert first != second


def test_a_lost_confirmation_leaves_the_run_with_its_machine_across_servers(
    start_cluster: StartCluster,
) -> None:
    cluster = start_cluster()
    pool = make_pool(cluster, 1)
    ((machine_id, key),) = pool.machines
    on_b = channel(cluster.b.url, key)
    run_id = start(cluster, pool)
    assert on_b.next()["runId"] == run_id
    assert on_b.confirm(run_id)["errors"] == []  # committed; say its answer was lost
    on_b.close()
    again = AgentSocket(cluster.a.url, key)
    ready = again.next()
    # The machine holds it, confirmed: the agent, which never started it, reports it
    # failed (app/agent/worker.py); nothing offers it again.
    assert (ready["kind"], ready["runId"]) == ("READY", run_id)
    found = row(cluster, run_id)
    assert (found["status"], found["machine_id"]) == ("RUNNING", machine_id)
    assert found["confirmed_at"] is not None
    again.close()


def test_server_b_killed_with_an_offer_unconfirmed_the_agent_gets_it_again_from_a(
    start_cluster: StartCluster,
) -> None:
    cluster = start_cluster()
    pool = make_pool(cluster, 1)
    ((machine_id, key),) = pool.machines
    on_b = channel(cluster.b.url, key, "process-1")
    run_id = start(cluster, pool)
    assert on_b.next()["runId"] == run_id
    cluster.b.kill()  # no close handler runs: the offer stays recorded as held
    assert row(cluster, run_id)["confirmed_at"] is None
    # The same agent process reconnects through A: its old channel is replaced, the
    # unconfirmed offer withdrawn and offered afresh. It is confirmed (and started) once.
    on_a = channel(cluster.a.url, key, "process-1")
    assert on_a.next()["runId"] == run_id
    assert on_a.confirm(run_id)["errors"] == []
    assert on_a.confirm(run_id)["errors"][0]["code"] == "CONFLICT"
    found = row(cluster, run_id)
    assert (found["status"], found["machine_id"]) == ("RUNNING", machine_id)
    on_a.close()


def test_a_second_agent_process_on_a_is_refused_while_the_first_holds_the_channel_on_b(
    start_cluster: StartCluster,
) -> None:
    cluster = start_cluster()
    pool = make_pool(cluster, 1)
    ((_machine, key),) = pool.machines
    first = channel(cluster.b.url, key, "process-1")
    second = AgentSocket(cluster.a.url, key, "process-2")
    assert "another agent holds this machine's channel" in second.refusal()
    second.close()
    run_id = start(cluster, pool)
    assert first.next()["runId"] == run_id  # the first keeps working
    first.close()
    time.sleep(0.5)
    third = channel(cluster.a.url, key, "process-2")  # once it closed, another may
    third.close()
