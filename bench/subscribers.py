"""Subscription benchmark: many `queueStatus` subscribers of one group, one change.

Usage, from the repository root (about two minutes with the defaults):

    .venv/bin/python bench/subscribers.py
    .venv/bin/python bench/subscribers.py --counts 1000 --changes 5

For each count N it starts, one after the other, `machine-groups serve` (on a fresh SQLite
file: a group with one connection, the bootstrapped admin's token) and
`bench/minimal_server.py` (a subscription that only relays a broadcast), both under the
same uvicorn configuration (`ws="auto"`, which is `websockets-sansio` here). Against each:

- memory per idle subscriber: the server's RSS before and after N graphql-transport-ws
  connections each subscribed (their snapshot received), divided by N;
- delivery: one change (`startRun` on the group; on the minimal server a broadcast) sent
  `--changes` times, each waiting until all N subscribers got it: the latency from
  sending the mutation to each subscriber's message, p50 and p99 over all deliveries.

The clients are asyncio `websockets` connections in this one process, on the same cores:
their own receive time is in both servers' latencies alike. Targets: p99 at most 1.5x
and memory per subscriber at most 1.25x the minimal server's. Not part of the tests.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import sqlite3
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import harness
import httpx
import jwt
from websockets.asyncio.client import ClientConnection, connect
from websockets.typing import Subprotocol

TARGET_P99_RATIO, TARGET_MEMORY_RATIO = 1.5, 1.25
OURS_SUBSCRIPTION = """
subscription($g: ID!) { queueStatus(groupId: $g) {
  groupId queuedCount runningCount machineCount onlineMachineCount idleMachineCount
  changedRun { id status } at
} }"""
MINIMAL_SUBSCRIPTION = OURS_SUBSCRIPTION


@dataclass
class Target:
    """A server under test and how to make one change on it."""

    server: harness.ServerProcess
    token: str | None
    group_id: str
    change: Any  # callable () -> None
    query: str
    results: dict[str, float] = field(default_factory=dict)


@dataclass
class Deliveries:
    """Arrival times of the current change's messages."""

    sent_at: float = 0.0
    latencies: list[float] = field(default_factory=list)
    expected: int = 0
    all_in: asyncio.Event = field(default_factory=asyncio.Event)

    def arrived(self) -> None:
        self.latencies.append(time.monotonic() - self.sent_at)
        if len(self.latencies) >= self.expected:
            self.all_in.set()


def setup_ours(folder: Path) -> Target:
    """Our server with a group and a connection; changes are `startRun` calls."""
    database = folder / "db.sqlite"
    log = folder / "ours.log"
    server = harness.ServerProcess(
        "ours", harness.ours_command(), harness.ours_env(database), log
    ).start()
    with sqlite3.connect(database) as db:
        (user_id,) = db.execute("SELECT id FROM users WHERE name_key = 'admin'").fetchone()
    now = datetime.now(UTC)
    claims = {"sub": user_id, "name": "admin", "iat": now, "exp": now + timedelta(days=1)}
    token = jwt.encode(claims, harness.SECRET, algorithm="HS256")
    client = httpx.Client(headers={"Authorization": f"Bearer {token}"}, timeout=120)

    def ok(query: str, **variables: Any) -> dict[str, Any]:
        body = client.post(server.url, json={"query": query, "variables": variables}).json()
        assert "errors" not in body, body
        (payload,) = body["data"].values()
        assert not payload.get("errors"), payload
        assert isinstance(payload, dict)
        return payload

    me = client.post(server.url, json={"query": "{ me { id } }"}).json()["data"]["me"]["id"]
    ok("mutation($u: ID!) { setUserPremium(userId: $u, premium: true) { errors { code } } }", u=me)
    group = ok(
        'mutation { createMachineGroup(input: {name: "bench"}) { machineGroup { id }'
        " errors { code } } }"
    )["machineGroup"]["id"]
    machine = ok(
        'mutation { registerMachine(input: {name: "bench-vm"}) { machine { id }'
        " machineKey errors { code } } }"
    )["machine"]["id"]
    ok(
        "mutation($m: ID!, $g: ID!) { addMachineToGroup(input: {machineId: $m, groupId: $g,"
        ' password: "bench group password"}) { errors { code } } }',
        m=machine,
        g=group,
    )
    connection = ok(
        'mutation($g: ID!) { createConnection(input: {name: "bench", groupId: $g,'
        ' username: "svc", password: "pw"}) { connection { id } errors { code } } }',
        g=group,
    )["connection"]["id"]
    numbers = iter(range(10**9))

    def change() -> None:
        ok(
            "mutation($c: ID!, $f: String!) { startRun(input: {connectionId: $c, flowName: $f})"
            " { run { id } errors { code message } } }",
            c=connection,
            f=f"flow-{next(numbers)}",
        )

    return Target(server, token, group, change, OURS_SUBSCRIPTION)


def setup_minimal(folder: Path) -> Target:
    """The minimal server; changes are broadcasts."""
    server = harness.ServerProcess(
        "minimal", harness.minimal_command(), dict(os.environ), folder / "minimal.log"
    ).start()
    client = httpx.Client(timeout=120)

    def change() -> None:
        body = client.post(
            server.url, json={"query": 'mutation { startRun(groupId: "g1") }'}
        ).json()
        assert "errors" not in body, body

    return Target(server, None, "g1", change, MINIMAL_SUBSCRIPTION)


async def subscribe(target: Target, deliveries: Deliveries) -> ClientConnection:
    """One connection with one subscription, its snapshot received; then counts arrivals."""
    socket = await connect(
        target.server.ws_url,
        subprotocols=[Subprotocol("graphql-transport-ws")],
        open_timeout=120,
        max_size=2**20,
    )
    init: dict[str, Any] = {"type": "connection_init"}
    if target.token:
        init["payload"] = {"authorization": f"Bearer {target.token}"}
    await socket.send(json.dumps(init))
    ack = json.loads(await socket.recv())
    assert ack["type"] == "connection_ack", ack
    await socket.send(
        json.dumps(
            {
                "id": "1",
                "type": "subscribe",
                "payload": {"query": target.query, "variables": {"g": target.group_id}},
            }
        )
    )
    snapshot = json.loads(await socket.recv())
    assert snapshot["type"] == "next" and "errors" not in snapshot["payload"], snapshot

    async def listen() -> None:
        async for raw in socket:
            message = json.loads(raw)
            if message["type"] == "next":
                deliveries.arrived()

    asyncio.get_running_loop().create_task(listen())
    return socket


async def run_target(target: Target, count: int, changes: int, wait: float) -> None:
    deliveries = Deliveries()
    gate = asyncio.Semaphore(50)

    async def one() -> ClientConnection:
        async with gate:
            return await subscribe(target, deliveries)

    warm = await asyncio.gather(*(one() for _ in range(20)))  # lazy imports, first allocations
    for socket in warm:
        await socket.close()
    await asyncio.sleep(1)
    before = target.server.rss_bytes()
    began = time.monotonic()
    sockets = await asyncio.gather(*(one() for _ in range(count)))
    connect_seconds = time.monotonic() - began
    await asyncio.sleep(2)
    after = target.server.rss_bytes()
    target.results["connect s"] = connect_seconds
    target.results["KB per subscriber"] = (after - before) / count / 1024
    latencies: list[float] = []
    loop = asyncio.get_running_loop()
    for _ in range(changes):
        deliveries.latencies, deliveries.expected = [], count
        deliveries.all_in = asyncio.Event()
        deliveries.sent_at = time.monotonic()
        await loop.run_in_executor(None, target.change)
        try:
            await asyncio.wait_for(deliveries.all_in.wait(), wait)
        except TimeoutError:
            print(f"  {target.server.name}: only {len(deliveries.latencies)} of {count} in time")
        latencies += deliveries.latencies
        await asyncio.sleep(0.5)
    ms = [latency * 1000 for latency in latencies]
    target.results["p50 ms"] = harness.percentile(ms, 0.5)
    target.results["p99 ms"] = harness.percentile(ms, 0.99)
    target.results["max ms"] = max(ms)
    await asyncio.gather(*(socket.close() for socket in sockets), return_exceptions=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--counts", type=int, nargs="+", default=[1000, 5000])
    parser.add_argument("--changes", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=60.0, help="per change")
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 2 * max(args.counts) + 1000
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, hard), hard))
    print(f"uvicorn ws={harness.ws_implementation()} (auto) for both servers")
    for count in args.counts:
        print(f"\n{count} subscribers, {args.changes} changes")
        measured: list[Target] = []
        for setup in (setup_minimal, setup_ours):
            with tempfile.TemporaryDirectory(prefix="bench-subs-") as folder:
                target = setup(Path(folder))
                try:
                    asyncio.run(run_target(target, count, args.changes, args.timeout))
                finally:
                    target.server.stop()
                measured.append(target)
                r = target.results
                print(
                    f"  {target.server.name:<8} p50 {r['p50 ms']:8.1f} ms"
                    f"  p99 {r['p99 ms']:8.1f} ms"
                    f"  max {r['max ms']:8.1f} ms  {r['KB per subscriber']:6.1f} KB/subscriber"
                    f"  (connecting took {r['connect s']:.1f} s)"
                )
        minimal, ours = measured
        p99 = ours.results["p99 ms"] / minimal.results["p99 ms"]
        memory = ours.results["KB per subscriber"] / minimal.results["KB per subscriber"]
        print(
            f"  ratio ours/minimal: p99 {p99:.2f}x (target <= {TARGET_P99_RATIO}:"
            f" {'met' if p99 <= TARGET_P99_RATIO else 'MISSED'}),"
            f" memory {memory:.2f}x (target <= {TARGET_MEMORY_RATIO}:"
            f" {'met' if memory <= TARGET_MEMORY_RATIO else 'MISSED'})"
        )


if __name__ == "__main__":
    main()
