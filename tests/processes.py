"""Processes the tests start (`machine-groups serve`, `machine-groups agent`) and GraphQL to them.

Every wait here has a deadline; a process a test started is stopped or killed at teardown.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import httpx
from sqlalchemy import select
from sqlmodel import col

from app.db.engine import Database
from app.db.models import User
from app.domain.identity import mint_token
from app.settings import Settings
from tests.conftest import POLICIES

COMMAND = [sys.executable, "-m", "app.cli"]
KEY_VARIABLE = "MG_MACHINE_KEY"
# Long enough for a cold interpreter to import the app on a busy machine.
START_SECONDS = 60.0

SET_PREMIUM = "mutation($u: ID!) { setUserPremium(userId: $u, premium: true) { errors { code } } }"
CREATE_GROUP = """
mutation($n: String!) {
  createMachineGroup(input: {name: $n}) { machineGroup { id } errors { code } }
}"""
REGISTER_MACHINE = """
mutation($n: String!) {
  registerMachine(input: {name: $n}) { machine { id } machineKey errors { code } }
}"""
ADD_TO_GROUP = """
mutation($m: ID!, $g: ID!, $p: String!) {
  addMachineToGroup(input: {machineId: $m, groupId: $g, password: $p}) { errors { code } }
}"""
CREATE_CONNECTION = """
mutation($g: ID!, $n: String!, $p: String!) {
  createConnection(input: {name: $n, groupId: $g, username: "svc", password: $p}) {
    connection { id status } errors { code message }
  }
}"""
START_RUN = """
mutation($c: ID!, $f: String!) {
  startRun(input: {connectionId: $c, flowName: $f}) { run { id status } errors { code message } }
}"""
CLAIM = """
mutation($w: Int) {
  claimNextRun(waitSeconds: $w) { run { id status } errors { code message } }
}"""
COMPLETE = """
mutation($id: ID!) {
  completeRun(id: $id, outcome: SUCCEEDED) { run { id status } errors { code message } }
}"""
CANCEL_RUN = """
mutation($id: ID!) { cancelRun(id: $id) { run { id status } errors { code message } } }"""
HEARTBEAT = """
mutation { heartbeat { machine { id currentRun { id } } errors { code message } } }"""


def environment(**extra: str) -> dict[str, str]:
    """This process's environment without any MG_* setting, plus `extra`."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("MG_")}
    env.update(extra)
    return env


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class GraphQLFailure(AssertionError):
    """An answer that was not HTTP 200 with data and no GraphQL errors."""


def graphql_request(
    token: str, query: str, variables: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The keyword arguments of an httpx `post` of one GraphQL request as `token`."""
    return {
        "json": {"query": query, "variables": dict(variables or {})},
        "headers": {"Authorization": f"Bearer {token}"},
    }


def data_of(response: httpx.Response) -> dict[str, Any]:
    """The data of an HTTP 200 answer without GraphQL errors (GraphQLFailure otherwise)."""
    if response.status_code != 200:
        raise GraphQLFailure(f"HTTP {response.status_code}: {response.text[:500]}")
    body = response.json()
    if "errors" in body:
        raise GraphQLFailure(f"GraphQL errors: {body['errors']}")
    data: dict[str, Any] = body["data"]
    return data


def payload_of(response: httpx.Response) -> dict[str, Any]:
    """The single mutation payload (or query data) of an answer that data_of accepts."""
    data = data_of(response)
    if len(data) == 1:
        (payload,) = data.values()
        if isinstance(payload, dict):
            return payload
    return data


def codes(payload: dict[str, Any]) -> list[str]:
    """The codes of a mutation payload's errors."""
    return [error["code"] for error in payload.get("errors") or []]


@dataclass
class Acknowledged:
    """What the API acknowledged to clients driving load: starts, claims and completions."""

    started: list[str] = field(default_factory=list)
    claims: list[tuple[str, str]] = field(default_factory=list)  # (machine id, run id)
    completed: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # refusals and unexpected answers

    def claimed(self, machine_id: str, payload: dict[str, Any]) -> str | None:
        """The run a claimNextRun payload granted (recorded), or None; errors are problems."""
        if payload["errors"]:
            self.problems.append(f"claimNextRun by {machine_id}: {payload['errors']}")
            return None
        if payload["run"] is None:
            return None
        run_id: str = payload["run"]["id"]
        self.claims.append((machine_id, run_id))
        return run_id


@dataclass(frozen=True)
class Caller:
    """GraphQL over HTTP to one server URL as one bearer token."""

    http: httpx.Client
    url: str
    token: str

    def call(self, query: str, **variables: Any) -> dict[str, Any]:
        """One request's payload (see payload_of)."""
        return payload_of(self.http.post(self.url, **graphql_request(self.token, query, variables)))

    def ok(self, query: str, **variables: Any) -> dict[str, Any]:
        """The payload of a mutation that must succeed."""
        payload = self.call(query, **variables)
        assert codes(payload) == [], payload
        return payload

    def create_group(self, name: str) -> str:
        """A new machine group's id."""
        group_id: str = self.ok(CREATE_GROUP, n=name)["machineGroup"]["id"]
        return group_id

    def register_machine(self, name: str) -> tuple[str, str]:
        """A newly registered machine's (id, key)."""
        registered = self.ok(REGISTER_MACHINE, n=name)
        return registered["machine"]["id"], registered["machineKey"]

    def add_to_group(self, machine_id: str, group_id: str, password: str) -> None:
        """Join a machine to a group with the group's password."""
        self.ok(ADD_TO_GROUP, m=machine_id, g=group_id, p=password)

    def create_connection(self, group_id: str, name: str, password: str) -> str:
        """A new connection's id: account `svc` with `password`, to a group."""
        connection_id: str = self.ok(CREATE_CONNECTION, g=group_id, n=name, p=password)[
            "connection"
        ]["id"]
        return connection_id


class ServerProcess:
    """`machine-groups serve` as a subprocess on a free loopback port; its log in `folder`."""

    def __init__(
        self,
        folder: Path,
        database_url: str,
        secret: str,
        *,
        name: str | None = None,
        ready_path: str = "/healthz",
        settings: Mapping[str, str] | None = None,
    ) -> None:
        self.name = name or folder.name
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.database_url = database_url
        self.secret = secret
        self.ready_path = ready_path
        self.port = free_port()
        self.log_path = folder / "server.log"
        self.env = environment(
            MG_DATABASE_URL=database_url,
            MG_SECRET_KEY=secret,
            MG_POLICY_DIR=str(POLICIES),
            MG_GRAPHIQL="false",
            **(settings or {}),
        )
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        """http://127.0.0.1:port, without a path."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        """The GraphQL endpoint."""
        return f"{self.base_url}/graphql"

    def launch(self) -> None:
        """Start the process (without waiting for it to answer)."""
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [*COMMAND, "serve", "--port", str(self.port)],
                cwd=self.folder,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def wait_ready(self, deadline: float) -> None:
        """Wait until its ready path answers 200, failing at `deadline` (time.monotonic)."""
        assert self.process is not None
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            try:
                if httpx.get(f"{self.base_url}{self.ready_path}", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise AssertionError(
            f"server {self.name} did not get ready (exit {self.process.poll()}); its log:\n"
            f"{self.log_tail()}"
        )

    def start(self, *, new_port: bool = False) -> ServerProcess:
        """Launch it and wait until it is ready; `new_port` moves it to another free port."""
        if new_port:
            self.port = free_port()
        self.launch()
        self.wait_ready(time.monotonic() + START_SECONDS)
        return self

    def kill(self) -> None:
        """SIGKILL, if it still runs: it dies at once, dropping every connection it holds."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self, grace: float = 15.0) -> None:
        """SIGTERM, then SIGKILL if it has not exited within `grace` seconds."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            self.kill()

    def command(self, *arguments: str) -> str:
        """Run another `machine-groups` command with the server's settings; its stdout."""
        done = subprocess.run(
            [*COMMAND, *arguments],
            cwd=self.folder,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=START_SECONDS,
            check=True,
        )
        return done.stdout.strip()

    def graphql(self, token: str, query: str, variables: dict[str, Any] | None = None) -> Any:
        """The data of one request that must have no GraphQL errors."""
        return data_of(httpx.post(self.url, timeout=30, **graphql_request(token, query, variables)))

    def log_entries(self) -> list[dict[str, Any]]:
        """The JSON log lines the server wrote so far (other lines are skipped)."""
        entries = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                try:
                    entries.append(json.loads(line))
                except ValueError:
                    continue
        return entries

    def error_entries(self) -> list[dict[str, Any]]:
        """Log entries at level error or worse."""
        return [e for e in self.log_entries() if e.get("level") in ("error", "critical")]

    def log_tail(self, lines: int = 60) -> str:
        """The end of the server's log, for failure messages."""
        if not self.log_path.exists():
            return "(no log)"
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def premium_admin(server: ServerProcess, http: httpx.Client) -> Caller:
    """The admin user (token minted from the server's database), given the premium licence."""

    async def find() -> User:
        """The admin user's row."""
        database = Database(server.database_url)
        try:
            async with database.read() as session:
                query = select(User).where(col(User.name_key) == "admin")
                return (await session.scalars(query)).one()
        finally:
            await database.dispose()

    admin = asyncio.run(find())
    settings = Settings(database_url=server.database_url, secret_keys=(server.secret,))
    caller = Caller(http, server.url, mint_token(settings, admin, datetime.now(UTC)))
    caller.ok(SET_PREMIUM, u=admin.id)
    return caller


class _Lines:
    """The lines a process prints on one stream, collected by a thread as they come."""

    def __init__(self, stream: IO[str], changed: threading.Condition) -> None:
        self.lines: list[str] = []
        self.closed = False
        self._changed = changed
        self._thread = threading.Thread(target=self._follow, args=(stream,), daemon=True)
        self._thread.start()

    def _follow(self, stream: IO[str]) -> None:
        for line in stream:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self.closed = True
            self._changed.notify_all()

    def join(self, timeout: float) -> None:
        """Wait until the stream has been read to its end."""
        self._thread.join(timeout)


def process_running(pid: int) -> bool:
    """Whether process `pid` exists and is not a zombie (orphans may stay zombies here)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    # The state follows the command name, which ends at the last ")".
    return stat[stat.rfind(")") + 2] not in "ZX"


def write_flow(folder: Path, name: str, body: str) -> Path:
    """An executable Python flow for `machine-groups agent`: `inputs` holds the JSON read
    from stdin, then `body` runs."""
    folder.mkdir(parents=True, exist_ok=True)
    program = folder / name
    program.write_text(
        f"#!{sys.executable}\n"
        "import json, os, sys, time\n"
        "inputs = json.load(sys.stdin)\n"
        f"{body.strip()}\n"
    )
    program.chmod(0o755)
    return program


class AgentProcess:
    """A `machine-groups agent` subprocess whose printed lines the test follows."""

    def __init__(
        self,
        server_url: str,
        key: str,
        flows: Path,
        *,
        key_in_env: bool,
        heartbeat: float = 0.5,
        options: Sequence[str] = (),
        state_dir: Path | None = None,
    ) -> None:
        command = [*COMMAND, "agent", "--server", server_url, "--flows", str(flows), *options]
        # Agents started on one flows folder share a state folder, as agents of one host do.
        state = state_dir or flows.parent / "agents"
        command += ["--heartbeat-interval", str(heartbeat), "--state-dir", str(state)]
        env = environment(**({KEY_VARIABLE: key} if key_in_env else {}))
        if not key_in_env:
            command += ["--key", key]
        self.process = subprocess.Popen(
            command,
            cwd=flows.parent,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None and self.process.stderr is not None
        self._changed = threading.Condition()
        self._stdout = _Lines(self.process.stdout, self._changed)
        self._stderr = _Lines(self.process.stderr, self._changed)

    @property
    def lines(self) -> list[str]:
        """What it printed on stdout so far."""
        with self._changed:
            return list(self._stdout.lines)

    @property
    def errors(self) -> list[str]:
        """What it printed on stderr so far."""
        with self._changed:
            return list(self._stderr.lines)

    def matching(self, pattern: str) -> list[str]:
        """The stdout lines so far that match a regular expression."""
        regex = re.compile(pattern)
        return [line for line in self.lines if regex.search(line)]

    def wait_for(self, pattern: str, timeout: float = 30.0) -> str:
        """The first stdout line matching `pattern`, waiting for it up to `timeout` seconds."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for line in self._stdout.lines:
                    if regex.search(line):
                        return line
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._stdout.closed:
                    raise AssertionError(
                        f"the agent printed no line matching {pattern!r}"
                        f" (exit {self.process.poll()}); stdout: {self._stdout.lines};"
                        f" stderr: {self._stderr.lines}"
                    )
                self._changed.wait(remaining)

    def finish(self, timeout: float = 30.0) -> int:
        """Wait for it to exit on its own; its exit code, with all its output read."""
        code = self.process.wait(timeout=timeout)
        self._stdout.join(timeout)
        self._stderr.join(timeout)
        return code

    def interrupt(self, timeout: float = 30.0) -> int:
        """Ctrl-C: SIGINT, then its exit code."""
        self.process.send_signal(signal.SIGINT)
        return self.finish(timeout)

    def kill(self) -> None:
        """SIGKILL, if it still runs."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
