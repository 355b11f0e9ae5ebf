"""A queueStatus subscriber on server B sees every change made through server A, in order."""

from __future__ import annotations

from typing import Any

import pytest

from tests.cluster.cluster_helpers import Cluster, make_pool
from tests.cluster.conftest import StartCluster
from tests.processes import CANCEL_RUN, CLAIM, COMPLETE, HEARTBEAT, START_RUN
from tests.ws import GraphQLSocket

pytestmark = pytest.mark.postgres_only

QUEUE_STATUS = """
subscription($g: ID!) {
  queueStatus(groupId: $g) { queuedCount runningCount changedRun { id status } }
}"""
# A run's statuses in the order they can follow each other here.
LIFECYCLE = ["QUEUED", "RUNNING", "SUCCEEDED", "CANCELLED"]
MESSAGE_SECONDS = 15.0


def _message(socket: GraphQLSocket) -> dict[str, Any]:
    data = socket.next_data(timeout=MESSAGE_SECONDS)
    assert data is not None, "the subscription ended"
    status: dict[str, Any] = data["queueStatus"]
    return status


def test_a_subscriber_on_b_sees_every_change_made_through_a_in_order(
    start_cluster: StartCluster,
) -> None:
    cluster: Cluster = start_cluster()
    pool = make_pool(cluster, 1)
    ((_, key),) = pool.machines
    a = cluster.a
    cluster.ok(a, HEARTBEAT, key)  # online before the subscription starts
    with GraphQLSocket(cluster.b.url, cluster.admin_token) as socket:
        assert socket.acknowledged()
        socket.subscribe(QUEUE_STATUS, {"g": pool.group_id})
        snapshot = _message(socket)
        assert snapshot == {"queuedCount": 0, "runningCount": 0, "changedRun": None}

        # One change at a time: B shows each exactly as it is.
        run_id = cluster.ok(a, START_RUN, c=pool.connection_id, f="one")["run"]["id"]
        assert _message(socket) == {
            "queuedCount": 1,
            "runningCount": 0,
            "changedRun": {"id": run_id, "status": "QUEUED"},
        }
        assert cluster.ok(a, CLAIM, key, w=0)["run"]["id"] == run_id
        assert _message(socket) == {
            "queuedCount": 0,
            "runningCount": 1,
            "changedRun": {"id": run_id, "status": "RUNNING"},
        }
        cluster.ok(a, COMPLETE, key, id=run_id)
        assert _message(socket) == {
            "queuedCount": 0,
            "runningCount": 0,
            "changedRun": {"id": run_id, "status": "SUCCEEDED"},
        }

        # A burst of changes through A without waiting for B: B shows them all, in order.
        changes: list[tuple[str, str]] = []  # (run id, status it changed to)
        started = []
        for number in range(6):
            run = cluster.ok(a, START_RUN, c=pool.connection_id, f=f"burst-{number}")["run"]
            started.append(run["id"])
            changes.append((run["id"], "QUEUED"))
        cluster.ok(a, CANCEL_RUN, id=started[-1])
        changes.append((started[-1], "CANCELLED"))
        for _ in started[:-1]:
            claimed = cluster.ok(a, CLAIM, key, w=0)["run"]["id"]
            changes.append((claimed, "RUNNING"))
            cluster.ok(a, COMPLETE, key, id=claimed)
            changes.append((claimed, "SUCCEEDED"))
        assert [run for run, status in changes if status == "RUNNING"] == started[:-1]

        messages = [_message(socket) for _ in changes]
        assert [m["changedRun"]["id"] for m in messages] == [run for run, _ in changes]
        for message, (run, status) in zip(messages, changes, strict=True):
            # A message reads the run when it is sent: it is that change or a later one.
            shown = message["changedRun"]["status"]
            assert LIFECYCLE.index(shown) >= LIFECYCLE.index(status), (run, status, shown)
        final = {run: status for run, status in changes}
        assert {m["changedRun"]["id"]: m["changedRun"]["status"] for m in messages} == final
        assert messages[-1]["queuedCount"] == 0 and messages[-1]["runningCount"] == 0
        # Nothing else: each change exactly once.
        with pytest.raises(TimeoutError):
            socket.receive(timeout=1.0)
    assert cluster.error_entries() == []
