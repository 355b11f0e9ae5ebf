"""The sweeper runs on both servers at once and expires each overdue run exactly once."""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

import pytest

from tests.cluster.cluster_helpers import Cluster, make_pool, wait_until
from tests.cluster.conftest import StartCluster
from tests.processes import CLAIM, START_RUN
from tests.ws import GraphQLSocket

pytestmark = pytest.mark.postgres_only

RUNS = 12
MACHINES = 3
QUEUE_STATUS = "subscription($g: ID!) { queueStatus(groupId: $g) { changedRun { id status } } }"
SWEPT = re.compile(r"sweeper ended (\d+) overdue run\(s\)")


def _messages(socket: GraphQLSocket, quiet_seconds: float) -> list[dict[str, Any]]:
    """Every message until none comes for `quiet_seconds`."""
    found: list[dict[str, Any]] = []
    while True:
        try:
            data = socket.next_data(timeout=quiet_seconds)
        except TimeoutError:
            return found
        assert data is not None, "the subscription ended"
        found.append(data["queueStatus"])


def _swept(cluster: Cluster) -> dict[str, int]:
    """How many runs each server's sweeper says it ended."""
    return {
        server.name: sum(
            int(match.group(1))
            for entry in server.log_entries()
            if (match := SWEPT.fullmatch(str(entry.get("message"))))
        )
        for server in (cluster.a, cluster.b)
    }


def test_sweepers_on_both_servers_expire_each_overdue_run_once(
    start_cluster: StartCluster,
) -> None:
    cluster = start_cluster(
        MG_MAX_QUEUE_SECONDS="2", MG_MAX_RUN_SECONDS="2", MG_SWEEP_INTERVAL_MS="50"
    )
    pool = make_pool(cluster, MACHINES)
    a, b = cluster.a, cluster.b
    with (
        GraphQLSocket(a.url, cluster.admin_token) as on_a,
        GraphQLSocket(b.url, cluster.admin_token) as on_b,
    ):
        for socket in (on_a, on_b):
            assert socket.acknowledged()
            socket.subscribe(QUEUE_STATUS, {"g": pool.group_id})
            assert socket.next_data(timeout=15) == {"queueStatus": {"changedRun": None}}
        started = [
            cluster.ok((a, b)[n % 2], START_RUN, c=pool.connection_id, f=f"late-{n}")["run"]["id"]
            for n in range(RUNS)
        ]
        # A few are claimed at once and then overrun their time; the rest wait too long.
        claimed = set()
        for number, (_, key) in enumerate(pool.machines):
            run = cluster.ok((a, b)[number % 2], CLAIM, key, w=0)["run"]
            if run is not None:
                claimed.add(run["id"])

        def all_ended() -> bool:
            return all(r["status"] not in ("QUEUED", "RUNNING") for r in cluster.runs().values())

        wait_until(all_ended, timeout=60, what="the sweepers ended every run")
        # Over a second more (twenty sweeps on each server), any second expiry would show.
        seen = {"A": _messages(on_a, 1.2), "B": _messages(on_b, 0.5)}

    runs = cluster.runs()
    assert set(runs) == set(started)
    for run_id, row in runs.items():
        expected = (
            ("TIMED_OUT", "RUN_TIMEOUT") if run_id in claimed else ("FAILED", "QUEUE_TIMEOUT")
        )
        assert (row["status"], row["failure_reason"]) == expected, dict(row)
        assert row["finished_at"] is not None
    # Each subscriber saw each run change once per step: queued, claimed (some), expired.
    for server, messages in seen.items():
        per_run = Counter(m["changedRun"]["id"] for m in messages if m["changedRun"])
        expected_counts = {run_id: 3 if run_id in claimed else 2 for run_id in started}
        assert dict(per_run) == expected_counts, f"messages on {server}: {messages}"
        last = {
            m["changedRun"]["id"]: m["changedRun"]["status"] for m in messages if m["changedRun"]
        }
        assert last == {run_id: runs[run_id]["status"] for run_id in started}
    # The two sweepers' own accounts add up to one expiry per run.
    swept = _swept(cluster)
    assert sum(swept.values()) == RUNS, swept
    assert cluster.error_entries() == []
