"""Operations: /healthz, /readyz, Prometheus metrics at /metrics, request ids, JSON logs."""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Callable

import httpx
import pytest

from app.db.models import Run
from app.logs import JsonFormatter
from tests.api.conftest import Account, Api
from tests.api.helpers import add_machine
from tests.server import LiveServer
from tests.ws import GraphQLSocket


def base(server: LiveServer) -> str:
    return server.url.removesuffix("/graphql")


def metric(server: LiveServer, name: str, **labels: str) -> float | None:
    """One sample of /metrics, or None when it is not there."""
    text = httpx.get(base(server) + "/metrics").text
    wanted = ",".join(f'{key}="{value}"' for key, value in sorted(labels.items()))
    pattern = re.escape(name + (f"{{{wanted}}}" if labels else "")) + r" (\S+)$"
    found = re.search(pattern, text, re.MULTILINE)
    return float(found.group(1)) if found else None


def test_readyz_answers_ready_when_the_database_and_policy_are(server: LiveServer) -> None:
    response = httpx.get(base(server) + "/readyz")
    assert response.status_code == 200
    body = response.json()
    assert body["ready"] is True
    assert body["policyError"] is None
    assert len(body["policy"]) == 12


def test_readyz_answers_503_when_the_database_is_unreachable(server: LiveServer) -> None:
    with server.database_unreachable():
        response = httpx.get(base(server) + "/readyz")
        assert response.status_code == 503
        assert response.json()["ready"] is False
        assert "database unreachable" in response.json()["reason"]
        # The process is still up: liveness stays green, so it is not restarted for this.
        assert httpx.get(base(server) + "/healthz").status_code == 200


def test_metrics_count_operations_and_errors_by_type(
    server: LiveServer, api: Api, admin: Account
) -> None:
    before = metric(server, "mg_graphql_operations_total", operation_type="query") or 0
    api.data("{ me { name } }", as_=admin)
    server.post("{ me { nmae } }", token=admin.token)
    assert metric(server, "mg_graphql_operations_total", operation_type="query") == before + 2
    assert (metric(server, "mg_graphql_errors_total", operation_type="query") or 0) >= 1
    assert metric(server, "mg_graphql_operations_total", operation_type="mutation") == 1  # premium


def test_metrics_show_queue_depth_claim_latency_and_open_subscriptions(
    server: LiveServer,
    api: Api,
    admin: Account,
    make_group: Callable[..., str],
    make_machine: Callable[..., tuple[str, str]],
) -> None:
    group_id = make_group()
    machine_id, machine_key = make_machine()
    assert add_machine(api, machine_id, group_id, as_=admin)["errors"] == []
    assert metric(server, "mg_queue_depth", group_id=group_id) == 0

    async def enqueue() -> None:
        async with server.state.db.write() as session:
            session.add(
                Run(
                    flow_name="Close books",
                    group_id=group_id,
                    started_by_id=admin.id,
                    enqueued_at=server.clock.now(),
                )
            )

    server.run(enqueue())
    assert metric(server, "mg_queue_depth", group_id=group_id) == 1

    claimed = api.data(
        "mutation { claimNextRun { run { flowName } errors { code } } }", as_=machine_key
    )
    assert claimed["claimNextRun"]["run"] == {"flowName": "Close books"}
    assert metric(server, "mg_queue_depth", group_id=group_id) == 0
    assert metric(server, "mg_claim_latency_seconds_count") == 1

    subscription = "subscription($g: ID!) { queueStatus(groupId: $g) { queuedCount } }"
    with GraphQLSocket(server.url, admin.token) as socket:
        assert socket.acknowledged()
        socket.subscribe(subscription, {"g": group_id})
        assert socket.next_data() == {"queueStatus": {"queuedCount": 0}}
        assert metric(server, "mg_open_subscriptions", subscription="queueStatus") == 1
    for _ in range(50):  # the server notices the socket closed a moment later
        if metric(server, "mg_open_subscriptions", subscription="queueStatus") == 0:
            break
        server.run(asyncio.sleep(0.05))
    assert metric(server, "mg_open_subscriptions", subscription="queueStatus") == 0


def test_every_response_carries_a_request_id(server: LiveServer) -> None:
    fresh = httpx.get(base(server) + "/healthz").headers["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", fresh)
    kept = httpx.get(base(server) + "/healthz", headers={"X-Request-ID": "lb-7f3a:01"})
    assert kept.headers["X-Request-ID"] == "lb-7f3a:01"
    # An id that could forge log lines or flood them is replaced, not echoed.
    for forged in ("a b", "x" * 65, "id\tinjected"):
        replaced = httpx.get(base(server) + "/healthz", headers={"X-Request-ID": forged})
        assert re.fullmatch(r"[0-9a-f]{32}", replaced.headers["X-Request-ID"])
    unauthorized = httpx.post(server.url, json={"query": "{ me { name } }"})
    assert unauthorized.status_code == 401 and "X-Request-ID" in unauthorized.headers


def test_each_request_is_logged_as_json_with_its_id(
    server: LiveServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="app.access")
    response = httpx.get(base(server) + "/readyz", headers={"X-Request-ID": "probe-1"})
    (record,) = [r for r in caplog.records if getattr(r, "request_id", None) == "probe-1"]
    line = json.loads(JsonFormatter().format(record))
    assert response.status_code == 200
    assert line["request_id"] == "probe-1"
    assert line["logger"] == "app.access"
    assert (line["method"], line["path"], line["status"]) == ("GET", "/readyz", 200)
    assert line["duration_ms"] >= 0
