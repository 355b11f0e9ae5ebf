"""Crash safety: the server is killed (SIGKILL) mid-load and restarted on the same database.

The server runs as a real process (`python -m app.cli serve`) on a SQLite file. Threads
start runs and agents claim and complete them while the test kills the server. What the
API acknowledged (HTTP 200, a run, no errors) must survive the crash: every started run
is in the database, every acknowledged completion stays completed, every acknowledged
claim is held by the machine it was given to, and no machine holds two running runs.
After the restart the agents pick up the runs they hold (`heartbeat`) and drain the
queue: every run then succeeded exactly once.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from app.db.engine import Database
from app.db.models import Run
from tests.conftest import REPO
from tests.processes import (
    CLAIM,
    COMPLETE,
    HEARTBEAT,
    START_RUN,
    Acknowledged,
    ServerProcess,
    graphql_request,
    payload_of,
    premium_admin,
)

# The server process runs on its own SQLite file; tests/cluster kills one on PostgreSQL.
pytestmark = pytest.mark.sqlite_only

SECRET = "crash-test-secret-key-0123456789abcdef0123"
PASSWORD = "crash test group password"
AGENTS = 4
STARTERS = 2
BACKLOG = 12  # starters keep at most this many acknowledged runs not yet completed
KILL_AFTER_COMPLETIONS = 25
LOAD_TIMEOUT = 15.0
DRAIN_TIMEOUT = 20.0


def _runs(server: ServerProcess) -> list[Run]:
    """Every run row, read straight from the database file."""

    async def read() -> list[Run]:
        database = Database(server.database_url)
        try:
            async with database.read() as session:
                return list(await session.scalars(select(Run)))
        finally:
            await database.dispose()

    return asyncio.run(read())


@pytest.fixture
def server_process(tmp_path: Path) -> Iterator[ServerProcess]:
    """A server process on a SQLite file of its own; stopped however the test ends."""
    server = ServerProcess(
        tmp_path,
        f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}",
        SECRET,
        settings={"PYTHONPATH": str(REPO)},
    )
    try:
        yield server
    finally:
        server.stop(grace=10)


def _call(http: httpx.Client, url: str, token: str, query: str, **variables: Any) -> dict[str, Any]:
    """The payload of one mutation; raises httpx errors when the server is gone."""
    response = http.post(url, **graphql_request(token, query, variables))
    response.raise_for_status()
    return payload_of(response)


def _set_up(server: ServerProcess) -> tuple[str, str, list[tuple[str, str]]]:
    """Admin token, a connection to a group, and (machine id, key) of its machines."""
    with httpx.Client(timeout=30) as http:
        admin = premium_admin(server, http)
        group = admin.create_group("crash")
        machines = []
        for number in range(AGENTS):
            machine_id, key = admin.register_machine(f"crash-{number}")
            admin.add_to_group(machine_id, group, PASSWORD)
            machines.append((machine_id, key))
        connection = admin.create_connection(group, "crash", "pw")
    return admin.token, connection, machines


def _agent(
    url: str,
    machine_id: str,
    key: str,
    acked: Acknowledged,
    stop: threading.Event,
    *,
    resume: bool = False,
) -> None:
    """Claim and complete until stopped or the server goes away; with `resume`, first
    finish the run the machine holds (its claim's answer may have been lost)."""
    with httpx.Client(timeout=10) as http:
        try:
            if resume:
                held = _call(http, url, key, HEARTBEAT)["machine"]["currentRun"]
                if held is not None:
                    acked.claims.append((machine_id, held["id"]))
                    done = _call(http, url, key, COMPLETE, id=held["id"])
                    if done["errors"]:
                        acked.problems.append(f"resume {held['id']}: {done['errors']}")
                    else:
                        acked.completed.append(held["id"])
            while not stop.is_set():
                run_id = acked.claimed(machine_id, _call(http, url, key, CLAIM, w=1))
                if run_id is None:
                    continue
                done = _call(http, url, key, COMPLETE, id=run_id)
                if done["errors"]:
                    acked.problems.append(f"complete {run_id}: {done['errors']}")
                    continue
                acked.completed.append(run_id)
        except httpx.HTTPError:
            return  # the server was killed: whatever was in flight is unacknowledged


def _starter(
    url: str, admin: str, connection: str, acked: Acknowledged, stop: threading.Event, name: str
) -> None:
    with httpx.Client(timeout=10) as http:
        number = 0
        try:
            while not stop.is_set():
                if len(acked.started) - len(acked.completed) >= BACKLOG:
                    time.sleep(0.005)
                    continue
                number += 1
                started = _call(http, url, admin, START_RUN, c=connection, f=f"{name}-{number}")
                if started["errors"] or started["run"] is None:
                    acked.problems.append(f"start: {started['errors']}")
                    continue
                acked.started.append(started["run"]["id"])
        except httpx.HTTPError:
            return


def _threads(*targets: tuple[Any, tuple[Any, ...], dict[str, Any]]) -> list[threading.Thread]:
    threads = [
        threading.Thread(target=target, args=args, kwargs=kwargs, daemon=True)
        for target, args, kwargs in targets
    ]
    for thread in threads:
        thread.start()
    return threads


def test_acknowledged_work_survives_a_kill_and_no_run_is_held_twice(
    server_process: ServerProcess,
) -> None:
    server = server_process
    server.start()
    admin, connection, machines = _set_up(server)
    acked = Acknowledged()  # across both lives of the server

    # Load, then SIGKILL while runs are being started, claimed and completed.
    stop = threading.Event()
    threads = _threads(
        *((_agent, (server.url, m, k, acked, stop), {}) for m, k in machines),
        *(
            (_starter, (server.url, admin, connection, acked, stop, f"s{n}"), {})
            for n in range(STARTERS)
        ),
    )
    deadline = time.monotonic() + LOAD_TIMEOUT
    while len(acked.completed) < KILL_AFTER_COMPLETIONS and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(acked.completed) >= KILL_AFTER_COMPLETIONS, server.log_tail()
    assert all(thread.is_alive() for thread in threads), "load stopped before the kill"
    server.kill()
    stop.set()
    for thread in threads:
        thread.join(15)
        assert not thread.is_alive()
    before_restart = Acknowledged(
        list(acked.started), list(acked.claims), list(acked.completed), list(acked.problems)
    )

    # The same database, a new process (on a new port).
    server.start(new_port=True)
    with sqlite3.connect(server.folder / "db.sqlite") as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    rows = {run.id: run for run in _runs(server)}
    lost = [run_id for run_id in before_restart.started if run_id not in rows]
    assert lost == [], f"{len(lost)} acknowledged run(s) lost"
    for machine_id, run_id in before_restart.claims:
        assert rows[run_id].machine_id == machine_id, f"{run_id} is not held by its claimer"
        assert rows[run_id].status in {"RUNNING", "SUCCEEDED"}, rows[run_id].status
    reverted = [r for r in before_restart.completed if rows[r].status != "SUCCEEDED"]
    assert reverted == [], "acknowledged completions were undone"
    running = Counter(run.machine_id for run in rows.values() if run.status == "RUNNING")
    assert [m for m, held in running.items() if held > 1] == [], "a machine holds two runs"

    # The agents come back: each finishes the run it holds, then they drain the queue.
    stop = threading.Event()
    threads = _threads(
        *((_agent, (server.url, m, k, acked, stop), {"resume": True}) for m, k in machines)
    )
    deadline = time.monotonic() + DRAIN_TIMEOUT
    rows = {run.id: run for run in _runs(server)}
    while time.monotonic() < deadline and any(
        run.status in {"QUEUED", "RUNNING"} for run in rows.values()
    ):
        time.sleep(0.1)
        rows = {run.id: run for run in _runs(server)}
    stop.set()
    for thread in threads:
        thread.join(15)

    assert acked.problems == []
    assert Counter(run.status for run in rows.values()) == {"SUCCEEDED": len(rows)}
    assert set(acked.started) <= set(rows)
    # No run was ever handed to two machines, in either life of the server.
    holders: dict[str, set[str]] = {}
    for machine_id, run_id in acked.claims:
        holders.setdefault(run_id, set()).add(machine_id)
    assert {run_id: held for run_id, held in holders.items() if len(held) > 1} == {}
    assert all(rows[run_id].status == "SUCCEEDED" for run_id in before_restart.completed)
