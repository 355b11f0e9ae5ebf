"""What the tests of real `machine-groups agent` processes share: a live server on real
time, runs started and read through the API, and waits on the flows' processes."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from app.domain.clock import ManualClock
from tests.api.conftest import Account, Api
from tests.processes import REGISTER_MACHINE, SET_PREMIUM, AgentProcess, ServerProcess

CREATE_CONNECTION = """
mutation($g: ID, $m: ID, $n: String!) {
  createConnection(input: {name: $n, groupId: $g, machineId: $m,
                           username: "svc-rpa", password: "local account secret"}) {
    connection { id status } errors { code }
  }
}"""

START_RUN = """
mutation($c: ID!, $f: String!, $p: RunPriority, $i: JSON) {
  startRun(input: {connectionId: $c, flowName: $f, priority: $p, inputs: $i}) {
    run { id status priority } errors { code message }
  }
}"""

RUN = """
query($id: ID!) {
  run(id: $id) {
    id flowName status priority output failureReason startedAt finishedAt machine { id }
  }
}"""

ADMIN_ID = "{ me { id } }"

StartAgent = Callable[..., AgentProcess]


class RealTimeClock(ManualClock):
    """A ManualClock that also follows real time, so that startedAt orders the claims."""

    def __init__(self) -> None:
        super().__init__()
        self._origin = time.monotonic()

    def now(self) -> datetime:
        """The time it was set to, plus the real time elapsed since."""
        return super().now() + timedelta(seconds=time.monotonic() - self._origin)


def open_connection(
    api: Api, admin: Account, *, group: str | None = None, machine: str | None = None
) -> str:
    """A new ACTIVE connection's id, to a group or to a single machine."""
    # A connection's name is unique among its owner's: named after its target.
    name = f"e2e {group or machine}"
    payload = api.ok(CREATE_CONNECTION, {"g": group, "m": machine, "n": name}, as_=admin)
    assert payload["connection"]["status"] == "ACTIVE"
    connection_id: str = payload["connection"]["id"]
    return connection_id


def queue_run(
    api: Api, admin: Account, connection: str, flow: str, inputs: Any, priority: str = "NORMAL"
) -> str:
    """A run started on a connection: its id."""
    payload = api.ok(START_RUN, {"c": connection, "f": flow, "p": priority, "i": inputs}, as_=admin)
    run_id: str = payload["run"]["id"]
    return run_id


def read_run(api: Api, admin: Account, run_id: str) -> dict[str, Any]:
    """A run as the API shows it."""
    run: dict[str, Any] = api.data(RUN, {"id": run_id}, as_=admin)["run"]
    return run


def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Poll `condition` until it holds, failing after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the condition did not hold in time"
        time.sleep(0.02)


def pid_gone(pid: int) -> bool:
    """Whether no process `pid` exists."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def read_pid(pid_file: Path, timeout: float = 30.0) -> int:
    """The pid a flow wrote in `pid_file`, waiting for it."""
    deadline = time.monotonic() + timeout
    while not pid_file.exists() or not pid_file.read_text():
        assert time.monotonic() < deadline, f"the flow never wrote {pid_file}"
        time.sleep(0.05)
    return int(pid_file.read_text())


@dataclass(frozen=True)
class MachineOn:
    """A machine registered on a server process by its premium admin, with a connection."""

    server: ServerProcess
    token: str  # the admin's
    key: str
    connection_id: str

    @classmethod
    def register(cls, server: ServerProcess, name: str) -> MachineOn:
        """Register machine `name` and connect to it."""
        token = server.command("token", "admin")
        admin_id = server.graphql(token, ADMIN_ID)["me"]["id"]
        server.graphql(token, SET_PREMIUM, {"u": admin_id})
        registered = server.graphql(token, REGISTER_MACHINE, {"n": name})["registerMachine"]
        machine_id = registered["machine"]["id"]
        connection = server.graphql(
            token, CREATE_CONNECTION, {"m": machine_id, "n": f"e2e {machine_id}"}
        )
        connection_id = connection["createConnection"]["connection"]["id"]
        return cls(server, token, registered["machineKey"], connection_id)

    def start_run(self, flow: str, inputs: Any) -> str:
        """A run of `flow` started on the machine: its id."""
        variables = {"c": self.connection_id, "f": flow, "i": inputs}
        run_id: str = self.server.graphql(self.token, START_RUN, variables)["startRun"]["run"]["id"]
        return run_id

    def run(self, run_id: str) -> dict[str, Any]:
        """A run as the API shows it."""
        run: dict[str, Any] = self.server.graphql(self.token, RUN, {"id": run_id})["run"]
        return run
