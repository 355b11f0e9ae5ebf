"""Growth benchmark: what each request costs at 1x, 10x and 100x data.

Usage, from the repository root:

    .venv/bin/python bench/growth.py                       # 1x, 10x, 100x on SQLite
    .venv/bin/python bench/growth.py --scales 1 100 --requests 200 --idle-seconds 30
    .venv/bin/python bench/growth.py --profile             # + where claim and sweep spend

The world (tests/growth_world.py, shared with the tests) at 1x is 1,000 groups, 2,000
machines, 10,000 runs of history and 1,000 audit entries; 10x and 100x multiply each
(100x: 100,000 groups, 200,000 machines, 1,000,000 runs, 100,000 audit entries). It is
inserted straight into the tables (executemany on a migrated, bootstrapped file) and
kept under `--cache` (default /tmp/mg-growth), one SQLite file per scale, reused while
the seed parameters match; a newer schema migrates the cached file in place. Each
measurement runs on a copy of it, as the claims change the data. About 1.4 GB of disk
at 100x (twice while a copy is in use); seeding 100x takes a few minutes.

Against `machine-groups serve` on the copy (in a subprocess), one request at a time, it
reports the p50 (and p90) of each request, interleaved round by round so that drift hits
all alike: the console's pages (`machineGroups`, `machines`, `runs`, `runs(status:)`,
`runs(groupId:)`, `auditLog`, each with `totalCount`) as the `operator` who sees nearly
everything (the trail as `admin`), the `queue` group's `queue(first: 50)` with positions
and start estimates, four pages as a viewer who sees one group, an agent's claimNextRun
+ completeRun; then the CPU of a server left idle (the sweeper
passes every second). Requests are timed on a server whose sweeper waits: a pass runs on
the event loop, and at 100x its cost (the idle row) would land on whichever request it
meets. The factor of each figure is its p50 at that scale over its p50 at 1x. Expiry
settings are far out so that the sweeper ends nothing of the seeded world. With
`--profile`, at the largest scale: the statements of claims, completions and sweeper
passes, in-process, with their times and plans. Not part of the test suite; read the
factors, not the absolute values.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import http.client
import json
import shutil
import sqlite3
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import harness

from app.db.models import User
from app.domain.identity import mint_token
from app.state import AppState
from tests.growth_world import (
    AGENT_KEY,
    BASE,
    PAGES,
    QUEUE,
    QUEUE_PAGE,
    QUEUED_IN_QUEUE_GROUP,
    SECRET,
    World,
    migrate,
    seed,
    settings_for,
)

SEED_VERSION = 2
FAR = str(10 * 365 * 24 * 3600)  # seconds: nothing seeded expires during a run
TARGET_PAGE, TARGET_QUEUE, TARGET_CLAIM = 1.5, 1.5, 1.3
TARGET_QUEUE_MS_AT_1X, TARGET_IDLE_CPU = 20.0, 1.0

CLAIM_COMPLETE = "claimNextRun + completeRun"
CLAIM = "mutation { claimNextRun { run { id } errors { code message } } }"
COMPLETE = """mutation($id: ID!) {
  completeRun(id: $id, outcome: SUCCEEDED) { run { id status } errors { code message } } }"""
IDLE = "idle CPU, % of a core"
# A viewer who sees one group among all: their pages are read from their side (their
# grants, their group's queue), not by a walk of every row deciding each.
NARROW = {f"{label}, narrow viewer": PAGES[label] for label in (
    "machineGroups(first: 50)", "machines(first: 50)", "runs(first: 50)",
    "runs(status: FAILED, first: 50)",
)}  # fmt: skip


def _url(path: Path) -> str:
    return f"sqlite+aiosqlite:///{path}"


def cached_world(cache: Path, scale: int) -> tuple[Path, World]:
    """The seeded file of `scale` (made once per seed version), migrated to the newest
    schema, and its world."""
    cache.mkdir(parents=True, exist_ok=True)
    parameters = json.dumps({"version": SEED_VERSION, "base": BASE, "scale": scale})
    tag = hashlib.sha256(parameters.encode()).hexdigest()[:12]
    path, about = cache / f"seed-x{scale}-{tag}.sqlite", cache / f"seed-x{scale}-{tag}.json"
    if path.exists() and about.exists():
        world = World(**json.loads(about.read_text()))
        began = time.perf_counter()
        migrate(_url(path))  # a newer schema: the cached file is migrated once
        print(f"  x{scale}: cached {path} ({time.perf_counter() - began:.1f} s to open)")
        return path, world
    began = time.perf_counter()
    for leftover in path.parent.glob(path.name + "*"):
        leftover.unlink()
    world = seed(_url(path), scale, datetime.now(UTC).replace(microsecond=0))
    about.write_text(json.dumps(asdict(world)))
    size = path.stat().st_size / 2**20
    print(f"  x{scale}: seeded {path} in {time.perf_counter() - began:.1f} s ({size:.0f} MB)")
    return path, world


# --- measuring ----------------------------------------------------------------


class Client:
    """One keep-alive HTTP connection (http.client: little client-side cost)."""

    def __init__(self, port: int) -> None:
        self._connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def post(self, query: str, variables: dict[str, Any], token: str) -> dict[str, Any]:
        body = json.dumps({"query": query, "variables": variables})
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
        self._connection.request("POST", "/graphql", body, headers)
        response = self._connection.getresponse()
        payload = json.loads(response.read())
        if response.status != 200 or "errors" in payload:
            raise RuntimeError(f"{response.status}: {payload}")
        data: dict[str, Any] = payload["data"]
        return data

    def timed(self, query: str, variables: dict[str, Any], token: str) -> float:
        began = time.perf_counter()
        self.post(query, variables, token)
        return (time.perf_counter() - began) * 1000

    def close(self) -> None:
        self._connection.close()


def _server_env(database: Path) -> dict[str, str]:
    return {
        **harness.ours_env(database),
        "MG_SECRET_KEY": SECRET,
        "MG_MAX_QUEUE_SECONDS": FAR,
        "MG_MAX_RUN_SECONDS": FAR,
        "MG_MACHINE_TIMEOUT": FAR,
        # Measured, not cut short: a slow page shows its time.
        "MG_REQUEST_TIMEOUT": "600",
    }


def _tokens(world: World) -> dict[str, str]:
    settings, now = settings_for("sqlite://"), datetime.now(UTC)
    operator = User(id=world.operator_id, name="operator", name_key="operator", created_at=now)
    admin = User(id=world.admin_id, name="admin", name_key="admin", created_at=now)
    narrow = User(id=world.narrow_id, name="narrow", name_key="narrow", created_at=now)
    return {
        "operator": mint_token(settings, operator, now),
        "admin": mint_token(settings, admin, now),
        "narrow": mint_token(settings, narrow, now),
    }


def _check(world: World, client: Client, tokens: dict[str, str]) -> None:
    """The pages answer what the world holds, before anything is timed."""
    variables = {"g": world.queue_group_id, "b": world.browsed_group_id}
    groups = client.post(PAGES["machineGroups(first: 50)"], {}, tokens["operator"])
    assert len(groups["machineGroups"]["edges"]) == 50, groups
    queue = client.post(QUEUE_PAGE, {"g": world.queue_group_id}, tokens["operator"])
    runs = queue["machineGroup"]["queue"]
    assert len(runs) == 50 and runs[-1]["queuePosition"] == 50, runs[-1]
    assert all(run["estimatedStartAt"] for run in runs), runs[0]
    for label, query in PAGES.items():
        token = tokens["admin" if "admin" in label else "operator"]
        (page,) = client.post(query, variables, token).values()
        assert page["edges"], label


def measure_scale(
    database: Path, world: World, requests: int, idle_seconds: float, log: Path
) -> dict[str, list[float]]:
    """Samples (ms) of each request, and the idle CPU, on servers over `database`.

    Requests are timed on a server whose sweeper waits (an hour between passes): a pass
    runs on the event loop, and at 100x its own cost (the idle CPU row) would land on
    whichever request it meets. The idle CPU is measured on a server that sweeps every
    second, as served.
    """
    quiet = {**_server_env(database), "MG_SWEEP_INTERVAL_MS": str(3600 * 1000)}
    server = harness.ServerProcess("ours", harness.ours_command(), quiet, log)
    server.start()
    labels = [*PAGES, QUEUE, *NARROW, CLAIM_COMPLETE]
    samples: dict[str, list[float]] = {label: [] for label in labels}
    client = Client(server.port)
    try:
        tokens = _tokens(world)
        _check(world, client, tokens)
        variables = {"g": world.queue_group_id, "b": world.browsed_group_id}
        operations = [
            *(
                (label, query, variables, tokens["admin" if "admin" in label else "operator"])
                for label, query in PAGES.items()
            ),
            (QUEUE, QUEUE_PAGE, {"g": world.queue_group_id}, tokens["operator"]),
            *((label, query, {}, tokens["narrow"]) for label, query in NARROW.items()),
        ]
        for _ in range(3):  # warm-up: statement caches, the page's filters
            for _label, query, values, token in operations:
                client.post(query, values, token)
        for _ in range(requests):
            for label, query, values, token in operations:
                samples[label].append(client.timed(query, values, token))
        # The agent claims the queue group's runs one by one (the queue page was timed
        # before: each claim shortens that queue).
        for number in range(min(requests, QUEUED_IN_QUEUE_GROUP - 10) + 3):
            began = time.perf_counter()
            claimed = client.post(CLAIM, {}, AGENT_KEY)["claimNextRun"]
            run = claimed["run"]
            assert run is not None, claimed
            done = client.post(COMPLETE, {"id": run["id"]}, AGENT_KEY)["completeRun"]
            assert not done["errors"], done
            if number >= 3:
                samples[CLAIM_COMPLETE].append((time.perf_counter() - began) * 1000)
    finally:
        client.close()
        server.stop()
    sweeping = harness.ServerProcess("ours", harness.ours_command(), _server_env(database), log)
    sweeping.start()
    try:
        time.sleep(5)  # start-up, and the sweeper's first passes
        cpu, began = sweeping.cpu_seconds(), time.perf_counter()
        time.sleep(idle_seconds)
        samples[IDLE] = [(sweeping.cpu_seconds() - cpu) / (time.perf_counter() - began) * 100]
    finally:
        sweeping.stop()
    return samples


@dataclass(frozen=True)
class Figure:
    p50: float
    p90: float


def summarise(samples: dict[str, list[float]]) -> dict[str, Figure]:
    return {
        label: Figure(statistics.median(values), harness.percentile(values, 0.9))
        for label, values in samples.items()
    }


def _target(label: str) -> float:
    if label == IDLE:
        return TARGET_IDLE_CPU
    if label == CLAIM_COMPLETE:
        return TARGET_CLAIM
    return TARGET_QUEUE if label == QUEUE else TARGET_PAGE


def report(results: dict[int, dict[str, Figure]]) -> None:
    scales = sorted(results)
    base = results[scales[0]]
    head = " | ".join(f"{scale}x p50 (p90)" for scale in scales)
    factors = " | ".join(f"{scale}x/{scales[0]}x" for scale in scales[1:])
    print(f"\n| request | {head} | {factors} | target |")
    print("|---|" + "---|" * (2 * len(scales)))
    for label in base:
        cells = []
        for scale in scales:
            figure = results[scale][label]
            if label == IDLE:
                cells.append(f"{figure.p50:.2f} %")
            else:
                cells.append(f"{figure.p50:.1f} ms ({figure.p90:.1f})")
        ratios = [results[scale][label].p50 / base[label].p50 for scale in scales[1:]]
        target = _target(label)
        if label == IDLE:
            last = results[scales[-1]][label].p50
            verdict = f"<= {target} % at {scales[-1]}x: {'met' if last <= target else 'MISSED'}"
        else:
            met = ratios[-1] <= target if ratios else True
            verdict = f"<= {target}x: {'met' if met else 'MISSED'}"
            if label == QUEUE:
                fast = base[label].p50 <= TARGET_QUEUE_MS_AT_1X
                verdict += (
                    f"; <= {TARGET_QUEUE_MS_AT_1X:.0f} ms at 1x: {'met' if fast else 'MISSED'}"
                )
        row = " | ".join([label, *cells, *(f"{ratio:.2f}" for ratio in ratios), verdict])
        print(f"| {row} |")


# --- profile --------------------------------------------------------------------


def profile(database: Path, world: World, rounds: int) -> None:
    """Where a claim + completion and a sweeper pass spend, statement by statement, with
    SQLite's plan of each (in-process, on a copy of the world)."""
    from sqlalchemy import event

    from app.db.models import Machine, ServerLife
    from app.domain.run_life import changes
    from app.queue import dispatch
    from app.queue.sweeper import sweep
    from app.settings import load_settings

    settings = load_settings(_server_env(database))
    timings: dict[str, dict[str, list[float]]] = {"claim + complete": {}, "sweeper pass": {}}
    phase = "claim + complete"
    passes: list[float] = []

    async def scenario() -> None:
        nonlocal phase
        state = AppState.build(settings)
        await state.start()
        began: dict[int, float] = {}
        async with state.transaction() as session:
            # A service up for longer than the machines' timeout: its passes also look for
            # lost machines (a server just started gives them the timeout to come back).
            now, up = state.services.clock.now(), timedelta(seconds=settings.machine_timeout)
            session.add(ServerLife(id="up-long", started_at=now - 2 * up, alive_at=now))

        def before(_c: Any, cursor: Any, statement: str, *_args: Any) -> None:
            began[id(cursor)] = time.perf_counter()

        def after(_c: Any, cursor: Any, statement: str, *_args: Any) -> None:
            elapsed = (time.perf_counter() - began.pop(id(cursor), time.perf_counter())) * 1000
            timings[phase].setdefault(" ".join(statement.split()), []).append(elapsed)

        # Reads, writes on the loop and writes that wait: every engine of the service.
        engines = [engine.sync_engine for engine in state.db._engines]
        try:
            async with state.db.read() as session:
                machine = await session.get(Machine, world.agent_machine_id)
            assert machine is not None
            for engine in engines:
                event.listen(engine, "before_cursor_execute", before)
                event.listen(engine, "after_cursor_execute", after)
            last = None
            for _ in range(rounds):
                phase = "claim + complete"
                run = await dispatch.claim_next_run(state.hub, machine, 0, None)
                assert run is not None
                async with state.transaction() as session:
                    await changes.complete(
                        session,
                        machine.id,
                        run.id,
                        succeeded=True,
                        output=None,
                        message=None,
                        now=state.services.clock.now(),
                    )
                phase = "sweeper pass"
                began_pass = time.perf_counter()
                last = await sweep(state.hub, last)
                passes.append((time.perf_counter() - began_pass) * 1000)
        finally:
            for engine in engines:
                event.remove(engine, "before_cursor_execute", before)
                event.remove(engine, "after_cursor_execute", after)
            await state.stop()

    asyncio.run(scenario())
    print(f"\nprofile at {world.scale}x, in-process: {rounds} claims + completions, then a")
    print(f"sweeper pass after each (a pass: p50 {statistics.median(passes):.1f} ms);")
    print("the statements of each by total time (ms per execution x executions), with plans")
    db = sqlite3.connect(database)
    for name, statements in timings.items():
        print(f"\n{name}:")
        ranked = sorted(statements.items(), key=lambda item: -sum(item[1]))
        for statement, times in ranked[:6]:
            print(f"\n  {statistics.median(times):7.2f} ms x {len(times)}: {statement[:240]}")
            if statement.split()[0].upper() in ("SELECT", "UPDATE", "INSERT", "DELETE"):
                try:
                    marks = [None] * statement.count("?")
                    for *_ids, step in db.execute(f"EXPLAIN QUERY PLAN {statement}", marks):
                        print(f"      {step}")
                except sqlite3.Error as error:
                    print(f"      (no plan: {error})")
    db.close()


# --- main -------------------------------------------------------------------------


def _copy(source: Path, folder: Path) -> Path:
    target = folder / "work.sqlite"
    for leftover in folder.glob("work.sqlite*"):
        leftover.unlink()
    shutil.copyfile(source, target)
    return target


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scales", type=int, nargs="+", default=[1, 10, 100])
    parser.add_argument("--requests", type=int, default=100, help="samples per request")
    parser.add_argument("--idle-seconds", type=float, default=20.0)
    parser.add_argument("--cache", type=Path, default=Path("/tmp/mg-growth"))
    parser.add_argument("--profile", action="store_true", help="claim and sweep, per statement")
    parser.add_argument("--profile-rounds", type=int, default=50)
    args = parser.parse_args(argv)

    print("seeding (or reusing the cached seeds)")
    worlds = {scale: cached_world(args.cache, scale) for scale in sorted(args.scales)}
    results: dict[int, dict[str, Figure]] = {}
    folder = args.cache / "work"
    folder.mkdir(exist_ok=True)
    for scale, (seeded, world) in worlds.items():
        database = _copy(seeded, folder)
        print(f"measuring x{scale}: {args.requests} rounds, then {args.idle_seconds:.0f} s idle")
        samples = measure_scale(
            database, world, args.requests, args.idle_seconds, folder / "server.log"
        )
        results[scale] = summarise(samples)
        for label, figure in results[scale].items():
            print(f"  {label:<40} p50 {figure.p50:9.2f}  p90 {figure.p90:9.2f}")
        if args.profile and scale == max(worlds):
            profile(_copy(seeded, folder), world, args.profile_rounds)
    for leftover in folder.glob("work.sqlite*"):
        leftover.unlink()
    report(results)


if __name__ == "__main__":
    sys.setrecursionlimit(10_000)
    main()
