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
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from app.db.engine import Database
from app.db.models import Run, User
from app.domain.clock import SystemClock
from app.domain.identity import mint_token
from app.settings import Settings
from tests.conftest import POLICIES, REPO

# The server process runs on its own SQLite file; tests/cluster kills one on PostgreSQL.
pytestmark = pytest.mark.sqlite_only

SECRET = "crash-test-secret-key-0123456789abcdef0123"
PASSWORD = "crash test group password"
AGENTS = 4
STARTERS = 2
BACKLOG = 12  # starters keep at most this many acknowledged runs not yet completed
KILL_AFTER_COMPLETIONS = 25
START_TIMEOUT = 30.0
LOAD_TIMEOUT = 15.0
DRAIN_TIMEOUT = 20.0

START = """
mutation($c: ID!, $f: String!) {
  startRun(input: {connectionId: $c, flowName: $f}) { run { id status } errors { code message } }
}"""
CLAIM = """
mutation { claimNextRun(waitSeconds: 1) { run { id status } errors { code message } } }"""
COMPLETE = """
mutation($id: ID!) {
  completeRun(id: $id, outcome: SUCCEEDED) { run { id status } errors { code message } }
}"""
HEARTBEAT = "mutation { heartbeat { machine { currentRun { id } } errors { code message } } }"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class ServerProcess:
    """`machine-groups serve` as a child process on the SQLite file in `folder`."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.database_url = f"sqlite+aiosqlite:///{folder / 'db.sqlite'}"
        self.log = folder / "server.log"
        self.env = {
            **os.environ,
            "MG_DATABASE_URL": self.database_url,
            "MG_SECRET_KEY": SECRET,
            "MG_POLICY_DIR": str(POLICIES),
            "MG_GRAPHIQL": "false",
            "PYTHONPATH": str(REPO),
        }
        self.process: subprocess.Popen[bytes] | None = None
        self.url = ""

    def start(self) -> None:
        """Start on a fresh port and wait until /healthz answers."""
        port = _free_port()
        self.url = f"http://127.0.0.1:{port}/graphql"
        command = [sys.executable, "-m", "app.cli", "serve", "--port", str(port)]
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                command, cwd=self.folder, env=self.env, stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"the server exited:\n{self.log_tail()}"
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"the server did not start in {START_TIMEOUT} s:\n{self.log_tail()}")

    def kill(self) -> None:
        """SIGKILL: no shutdown, no flush, no cleanup."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)

    def log_tail(self) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-30:])

    def runs(self) -> list[Run]:
        """Every run row, read straight from the database file."""

        async def read() -> list[Run]:
            database = Database(self.database_url)
            try:
                async with database.read() as session:
                    return list(await session.scalars(select(Run)))
            finally:
                await database.dispose()

        return asyncio.run(read())


@pytest.fixture
def server_process(tmp_path: Path) -> Iterator[ServerProcess]:
    """A server process on a SQLite file of its own; stopped however the test ends."""
    server = ServerProcess(tmp_path)
    try:
        yield server
    finally:
        server.stop()


def _call(http: httpx.Client, url: str, token: str, query: str, **variables: Any) -> dict[str, Any]:
    """The payload of one mutation; raises httpx errors when the server is gone."""
    response = http.post(
        url,
        json={"query": query, "variables": variables},
        headers={"Authorization": f"Bearer {token}"},
    )
    response.raise_for_status()
    body = response.json()
    assert "errors" not in body, body["errors"]
    (payload,) = body["data"].values()
    assert isinstance(payload, dict)
    return payload


def _ok(http: httpx.Client, url: str, token: str, query: str, **variables: Any) -> dict[str, Any]:
    payload = _call(http, url, token, query, **variables)
    assert payload["errors"] == [], payload["errors"]
    return payload


def _admin_token(server: ServerProcess) -> str:
    with sqlite3.connect(server.folder / "db.sqlite") as db:
        (user_id,) = db.execute("SELECT id FROM users WHERE name_key = 'admin'").fetchone()
    settings = Settings(secret_keys=(SECRET,))
    return mint_token(
        settings, User(id=user_id, name="admin", name_key="admin"), SystemClock().now()
    )


def _set_up(server: ServerProcess) -> tuple[str, str, list[tuple[str, str]]]:
    """Admin token, a connection to a group, and (machine id, key) of its machines."""
    admin = _admin_token(server)
    with httpx.Client(timeout=30) as http:
        me = http.post(
            server.url,
            json={"query": "{ me { id } }"},
            headers={"Authorization": f"Bearer {admin}"},
        ).json()["data"]["me"]["id"]
        _ok(
            http,
            server.url,
            admin,
            "mutation($u: ID!) { setUserPremium(userId: $u, premium: true) { errors { code } } }",
            u=me,
        )
        group = _ok(
            http,
            server.url,
            admin,
            'mutation { createMachineGroup(input: {name: "crash"}) {'
            " machineGroup { id } errors { code } } }",
        )["machineGroup"]["id"]
        machines = []
        for number in range(AGENTS):
            registered = _ok(
                http,
                server.url,
                admin,
                "mutation($n: String!) { registerMachine(input: {name: $n}) {"
                " machine { id } machineKey errors { code } } }",
                n=f"crash-{number}",
            )
            machine_id = registered["machine"]["id"]
            _ok(
                http,
                server.url,
                admin,
                "mutation($m: ID!, $g: ID!, $p: String!) { addMachineToGroup(input:"
                " {machineId: $m, groupId: $g, password: $p}) { errors { code } } }",
                m=machine_id,
                g=group,
                p=PASSWORD,
            )
            machines.append((machine_id, registered["machineKey"]))
        connection = _ok(
            http,
            server.url,
            admin,
            'mutation($g: ID!) { createConnection(input: {name: "crash", groupId: $g,'
            ' username: "svc", password: "pw"}) { connection { id } errors { code } } }',
            g=group,
        )["connection"]["id"]
    return admin, connection, machines


@dataclass
class Acknowledged:
    """What the API acknowledged to the clients, across both lives of the server."""

    started: list[str] = field(default_factory=list)
    claims: list[tuple[str, str]] = field(default_factory=list)  # (machine id, run id)
    completed: list[str] = field(default_factory=list)
    refusals: list[str] = field(default_factory=list)


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
                        acked.refusals.append(f"resume {held['id']}: {done['errors']}")
                    else:
                        acked.completed.append(held["id"])
            while not stop.is_set():
                claimed = _call(http, url, key, CLAIM)
                if claimed["errors"]:
                    acked.refusals.append(f"claim by {machine_id}: {claimed['errors']}")
                    continue
                if claimed["run"] is None:
                    continue
                run_id = claimed["run"]["id"]
                acked.claims.append((machine_id, run_id))
                done = _call(http, url, key, COMPLETE, id=run_id)
                if done["errors"]:
                    acked.refusals.append(f"complete {run_id}: {done['errors']}")
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
                started = _call(http, url, admin, START, c=connection, f=f"{name}-{number}")
                if started["errors"] or started["run"] is None:
                    acked.refusals.append(f"start: {started['errors']}")
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
    acked = Acknowledged()

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
        list(acked.started), list(acked.claims), list(acked.completed), list(acked.refusals)
    )

    # The same database, a new process.
    server.start()
    with sqlite3.connect(server.folder / "db.sqlite") as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    rows = {run.id: run for run in server.runs()}
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
    rows = {run.id: run for run in server.runs()}
    while time.monotonic() < deadline and any(
        run.status in {"QUEUED", "RUNNING"} for run in rows.values()
    ):
        time.sleep(0.1)
        rows = {run.id: run for run in server.runs()}
    stop.set()
    for thread in threads:
        thread.join(15)

    assert acked.refusals == []
    assert Counter(run.status for run in rows.values()) == {"SUCCEEDED": len(rows)}
    assert set(acked.started) <= set(rows)
    # No run was ever handed to two machines, in either life of the server.
    holders: dict[str, set[str]] = {}
    for machine_id, run_id in acked.claims:
        holders.setdefault(run_id, set()).add(machine_id)
    assert {run_id: held for run_id, held in holders.items() if len(held) > 1} == {}
    assert all(rows[run_id].status == "SUCCEEDED" for run_id in before_restart.completed)
