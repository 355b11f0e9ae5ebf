"""Read-path benchmark: the `machineGroups(first: 50)` page against bare Strawberry.

Usage, from the repository root (about two minutes):

    .venv/bin/python bench/read_path.py
    .venv/bin/python bench/read_path.py --seconds 4 --rounds 6 --concurrency 16 --profile

It inserts, straight into a fresh SQLite file, 1,000 groups of 10 machines each (owned by
`alice`, a few running and queued runs each) and grants on every one of them to `viewer`;
then starts `machine-groups serve` on that file and `bench/minimal_server.py` (the same
page's types and fields from memory), both subprocesses under the same uvicorn
configuration, and drives each in turn with the same keep-alive HTTP load. It reports:

1. requests/s and server CPU per request of the page on both servers, and the ratio
   (target: ours at least 0.6 of the minimal server's), and `{ __typename }` on the
   minimal server for context;
2. the authorization share: the page served in-process (the same app, through
   `httpx.ASGITransport`, one request at a time) with the permission code wrapped in
   `time.perf_counter` timers, as a share of the request (target: under 5%).

Rounds alternate the servers so that drift on a shared machine hits both alike, and the
ratio reported is the median of the rounds' own ratios (each round measures both pages
back to back); read the ratios, not the absolute numbers. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import tempfile
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import harness
import httpx

from app.db.models import Grant, Machine, MachineGroup, RoleAssignment, Run, User, new_id
from app.domain.enums import RecordKind, RunStatus, SecurityRole
from app.domain.identity import mint_token
from app.settings import Settings
from app.state import AppState

GROUPS, MACHINES_PER_GROUP = 1000, 10
TARGET_RATIO, TARGET_AUTHZ_SHARE = 0.6, 0.05

PAGE = """
query Page {
  machineGroups(first: 50) {
    totalCount
    pageInfo { hasNextPage endCursor }
    edges { node {
      id name description myAccess machineCount runningCount queuedCount owner { name }
    } }
  }
}"""
TYPENAME = "{ __typename }"


def settings_for(database: Path) -> Settings:
    """The settings `machine-groups serve` reads from `harness.ours_env(database)`."""
    return Settings(
        database_url=f"sqlite+aiosqlite:///{database}",
        secret_keys=(harness.SECRET,),
        policy_dir=harness.REPO / "policies",
        graphiql=False,
    )


async def seed(settings: Settings) -> str:
    """Migrate, bootstrap and fill the database; a token of the viewer."""
    state = AppState.build(settings)
    await state.start()
    try:
        now = state.services.clock.now()
        environment_id = state.default_environment_id
        viewer = User(id=new_id(), name="viewer", name_key="viewer", created_at=now)
        alice = User(id=new_id(), name="alice", name_key="alice", created_at=now)
        groups: list[MachineGroup] = []
        rows: list[Any] = []
        runs: list[Run] = []
        for i in range(GROUPS):
            group = MachineGroup(
                id=new_id(),
                environment_id=environment_id,
                name=f"Group {i:04d}",
                name_key=f"group {i:04d}",
                description=f"description {i}" if i % 2 == 0 else None,
                owner_id=alice.id,
                created_at=now,
            )
            groups.append(group)
            rows.append(
                Grant(
                    record_kind=RecordKind.MACHINE_GROUP.value,
                    record_id=group.id,
                    user_id=viewer.id,
                    level="CO_OWNER" if i % 3 else "USER",
                    created_at=now,
                )
            )
            machines = [
                Machine(
                    id=new_id(),
                    environment_id=environment_id,
                    name=f"VM {i:04d}-{k}",
                    name_key=f"vm {i:04d}-{k}",
                    owner_id=alice.id,
                    group_id=group.id,
                    key_hash=new_id(),
                    created_at=now,
                )
                for k in range(MACHINES_PER_GROUP)
            ]
            rows += machines
            runs += [
                Run(
                    flow_name="close-month",
                    status=RunStatus.RUNNING.value,
                    group_id=group.id,
                    machine_id=machines[0].id,
                    started_by_id=viewer.id,
                    enqueued_at=now,
                    started_at=now,
                )
                for _ in range(i % 2)
            ]
            runs += [
                Run(
                    flow_name=f"flow {k}",
                    status=RunStatus.QUEUED.value,
                    group_id=group.id,
                    started_by_id=viewer.id,
                    enqueued_at=now + timedelta(seconds=k),
                )
                for k in range(i % 5)
            ]
        async with state.db.write() as session:
            session.add_all([viewer, alice])
            await session.flush()
            session.add(
                RoleAssignment(
                    user_id=viewer.id,
                    environment_id=environment_id,
                    role=SecurityRole.DESKTOP_FLOWS_MACHINE_OWNER.value,
                )
            )
            for batch in (groups, rows, runs):  # parents first
                session.add_all(batch)
                await session.flush()
        return mint_token(settings, viewer, now)
    finally:
        await state.stop()


def check_page(url: str, token: str | None) -> None:
    """One page, checked: 50 groups with every field, no errors."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    body = httpx.post(url, json={"query": PAGE}, headers=headers, timeout=30).json()
    assert "errors" not in body, body
    page = body["data"]["machineGroups"]
    assert page["totalCount"] == GROUPS and len(page["edges"]) == 50, page["totalCount"]
    node = page["edges"][0]["node"]
    assert node["machineCount"] == MACHINES_PER_GROUP and node["myAccess"], node


def measure(
    server: harness.ServerProcess,
    query: str,
    token: str | None,
    concurrency: int,
    seconds: float,
) -> tuple[float, float]:
    """(requests/s, server CPU ms per request) under the load."""
    body = json.dumps({"query": query}).encode()
    asyncio.run(harness.http_load(server.url, body, token, concurrency, 1.0))  # warm-up
    cpu, began = server.cpu_seconds(), time.perf_counter()
    done, bad = asyncio.run(harness.http_load(server.url, body, token, concurrency, seconds))
    elapsed, cpu_used = time.perf_counter() - began, server.cpu_seconds() - cpu
    if bad:
        raise RuntimeError(f"{server.name}: {bad} of {done} responses failed")
    return done / elapsed, cpu_used / done * 1000


class Timers:
    """Wall time inside wrapped functions, by name (a nested call counts once)."""

    def __init__(self) -> None:
        self.seconds: defaultdict[str, float] = defaultdict(float)
        self.calls: defaultdict[str, int] = defaultdict(int)
        self._depth = 0

    def wrap_sync(self, module: Any, name: str, label: str) -> None:
        original = getattr(module, name)

        @functools.wraps(original)
        def timed(*args: Any, **kwargs: Any) -> Any:
            self._depth += 1
            began = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self._depth -= 1
                if self._depth == 0:
                    self.seconds[label] += time.perf_counter() - began
                self.calls[label] += 1

        setattr(module, name, timed)

    def wrap_async(self, owner: Any, name: str, label: str, method: bool = False) -> None:
        original: Callable[..., Awaitable[Any]] = getattr(owner, name)

        @functools.wraps(original)
        async def timed(*args: Any, **kwargs: Any) -> Any:
            began = time.perf_counter()
            try:
                return await original(*args, **kwargs)
            finally:
                self.seconds[label] += time.perf_counter() - began
                self.calls[label] += 1

        setattr(owner, name, timed)


async def authorization_share(settings: Settings, token: str, requests: int, profile: bool) -> None:
    """The page in-process, with the permission code timed; prints the shares."""
    import app.domain.access
    import app.domain.visibility
    import app.graphql.groups
    import app.graphql.types.group
    import app.graphql.view
    from app.main import create_app

    timers = Timers()
    # Deciding permissions on this page: the visibility filter of the page query, each
    # node's level (myAccess) and any decision-table lookups. The viewer's grants are read
    # by a join inside the page's one statement (with the rows, counts and owners): that
    # statement is reported apart, as the grant's share of it cannot be timed alone.
    timers.wrap_sync(app.graphql.groups, "visible_groups_filter", "decide")
    timers.wrap_sync(app.graphql.types.group, "level_of", "decide")
    timers.wrap_sync(app.graphql.types.group, "visible_grants", "decide")
    timers.wrap_sync(app.domain.visibility.Visible, "seen", "decide")
    timers.wrap_sync(app.domain.access, "decide", "decide")
    timers.wrap_sync(app.domain.access, "role_permits", "decide")
    timers.wrap_async(app.graphql.groups, "list_groups", "page SQL (rows+grants+counts)")
    timers.wrap_async(app.graphql.view, "principal_for", "authentication")

    service = create_app(settings)
    headers = {"Authorization": f"Bearer {token}"}
    async with (
        service.router.lifespan_context(service),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=service), base_url="http://bench"
        ) as client,
    ):

        async def one() -> None:
            response = await client.post("/graphql", json={"query": PAGE}, headers=headers)
            assert response.status_code == 200 and "errors" not in response.json()

        for _ in range(20):
            await one()
        timers.seconds.clear()
        timers.calls.clear()
        profiler: Any = None
        if profile:
            from pyinstrument import Profiler  # optional: pip install pyinstrument

            profiler = Profiler(async_mode="enabled")
            profiler.start()
        began = time.perf_counter()
        for _ in range(requests):
            await one()
        total = time.perf_counter() - began
        if profiler is not None:
            profiler.stop()
    per_request = total / requests * 1000
    print(f"\nauthorization share, in-process, {requests} sequential requests")
    print(f"  request                          {per_request:7.3f} ms")
    for label in ("decide", "page SQL (rows+grants+counts)", "authentication"):
        ms = timers.seconds[label] / requests * 1000
        calls = timers.calls[label] / requests
        share = timers.seconds[label] / total
        print(f"  {label:<32} {ms:7.3f} ms  {share:6.1%}  ({calls:.0f} calls per request)")
    decided = timers.seconds["decide"]
    verdict = "met" if decided / total < TARGET_AUTHZ_SHARE else "MISSED"
    print(
        f"  deciding permissions (decide): {decided / total:.1%} of the request"
        f" (target < {TARGET_AUTHZ_SHARE:.0%}: {verdict}); the grant itself is one join of"
        " the page's statement"
    )
    if profiler is not None:
        print(profiler.output_text(unicode=False, color=False, show_all=False))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=4.0, help="length of each measurement")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--authz-requests", type=int, default=300)
    parser.add_argument("--profile", action="store_true", help="pyinstrument the in-process page")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-read-") as folder:
        database = Path(folder) / "db.sqlite"
        settings = settings_for(database)
        began = time.perf_counter()
        token = asyncio.run(seed(settings))
        print(
            f"seeded {GROUPS} groups x {MACHINES_PER_GROUP} machines, viewer holds a grant on"
            f" each ({time.perf_counter() - began:.1f} s)"
        )
        log = Path(folder) / "servers.log"
        ours = harness.ServerProcess(
            "ours", harness.ours_command(), harness.ours_env(database), log
        )
        minimal = harness.ServerProcess("minimal", harness.minimal_command(), dict(os.environ), log)
        try:
            ours.start()
            minimal.start()
            print(
                f"uvicorn ws={harness.ws_implementation()} (auto) for both; loop and http auto;"
                f" {args.concurrency} keep-alive clients, {args.seconds:.0f} s per measurement"
            )
            check_page(ours.url, token)
            check_page(minimal.url, None)
            results: defaultdict[str, list[tuple[float, float]]] = defaultdict(list)
            for round_number in range(args.rounds):
                order = [(minimal, PAGE), (ours, PAGE), (minimal, TYPENAME)]
                if round_number % 2:
                    order = order[::-1]
                for server, query in order:
                    key = f"{server.name} {'page' if query is PAGE else '__typename'}"
                    who = token if server is ours else None
                    results[key].append(measure(server, query, who, args.concurrency, args.seconds))
            print(f"\n{'':<22} {'requests/s':>11} {'server CPU/request':>19}   (rounds)")
            summary: dict[str, float] = {}
            for key in ("ours page", "minimal page", "minimal __typename"):
                rates = [rate for rate, _cpu in results[key]]
                cpus = [cpu for _rate, cpu in results[key]]
                summary[key] = harness.median(rates)
                summary[key + " cpu"] = harness.median(cpus)
                each = ", ".join(f"{rate:.0f}" for rate in rates)
                print(f"{key:<22} {summary[key]:11.1f} {summary[key + ' cpu']:16.2f} ms   ({each})")
            # Each round measures both pages back to back: the machine's drift over a few
            # seconds hits both alike, so the round's own ratio is the sample.
            ratios = [
                ours_rate / minimal_rate
                for (ours_rate, _), (minimal_rate, _) in zip(
                    results["ours page"], results["minimal page"], strict=True
                )
            ]
            ratio = harness.median(ratios)
            cpu_ratio = summary["minimal page cpu"] / summary["ours page cpu"]
            verdict = "met" if ratio >= TARGET_RATIO else "MISSED"
            print(
                f"\nthroughput ratio ours/minimal, median of the rounds: {ratio:.2f}"
                f" (target >= {TARGET_RATIO}: {verdict});"
                f" rounds {', '.join(f'{each:.2f}' for each in ratios)};"
                f" by median server CPU per request: {cpu_ratio:.2f}"
            )
            print(
                "minimal page vs minimal __typename: "
                f"{summary['minimal __typename'] / summary['minimal page']:.1f}x slower"
            )
        finally:
            ours.stop()
            minimal.stop()
        asyncio.run(authorization_share(settings, token, args.authz_requests, args.profile))


if __name__ == "__main__":
    main()
