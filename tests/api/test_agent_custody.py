"""The agent owns the flows on its machine: real agents, servers and flows, killed for real.

A killed agent's flow is stopped by the next agent before it claims anything; a second
agent for the same machine does not start; a server outage longer than the machine
timeout does not end a run whose agent comes back.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.api.agent_helpers import (
    MachineOn,
    StartAgent,
    open_connection,
    queue_run,
    read_run,
    wait_until,
)
from tests.api.conftest import Account, Api
from tests.processes import ServerProcess, process_running, write_flow
from tests.server import LiveServer

SECRET = "agent-custody-secret-key-0123456789abcdef0123456789"
# Above the agent's longest backoff (10 s): an agent reaches a restarted server in time.
MACHINE_TIMEOUT = 11

# Holds a lock for its whole life, shared with a child it leaves in its group: a second
# flow that finds the lock taken notes the overlap. With "stubborn", both ignore SIGTERM.
EXCLUSIVE = """
import fcntl, signal, subprocess

def note(event):
    with open(inputs["log"], "a") as handle:
        handle.write(f"{event} {os.environ['MG_RUN_ID']} {time.time()}\\n")

hold = open(inputs["lock"], "a")
try:
    fcntl.flock(hold, fcntl.LOCK_EX | fcntl.LOCK_NB)
except BlockingIOError:
    note("overlap")
    sys.exit(3)
note("start")
if inputs.get("stubborn"):
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
child = subprocess.Popen(["sleep", str(inputs["seconds"])], pass_fds=[hold.fileno()])
with open(inputs["pids"], "w") as handle:
    handle.write(f"{os.getpid()} {child.pid}")
time.sleep(inputs["seconds"])
note("stop")
print(json.dumps({"run": os.environ["MG_RUN_ID"]}))
"""
# Notes that it ran, then works until the test releases it.
UNTIL_RELEASED = """
with open(inputs["executions"], "a") as handle:
    handle.write(os.environ["MG_RUN_ID"] + "\\n")
deadline = time.time() + 120
while not os.path.exists(inputs["release"]) and time.time() < deadline:
    time.sleep(0.05)
print(json.dumps({"released": os.path.exists(inputs["release"])}))
"""
QUICK = 'print(json.dumps({"ok": True}))'


@dataclass(frozen=True)
class Machine:
    """A machine's key, and a connection to it."""

    key: str
    connection: str


@pytest.fixture
def flows(tmp_path: Path) -> Path:
    """The flows folder the agents run programs from."""
    folder = tmp_path / "flows"
    for name, body in {"exclusive": EXCLUSIVE, "until-released": UNTIL_RELEASED}.items():
        write_flow(folder, name, body)
    write_flow(folder, "quick", QUICK)
    return folder


@pytest.fixture
def machine(api: Api, admin: Account, make_machine: Callable[..., tuple[str, str]]) -> Machine:
    """A machine of the live server, with a connection to it."""
    machine_id, key = make_machine()
    return Machine(key, open_connection(api, admin, machine=machine_id))


@pytest.fixture
def killed_at_teardown() -> Iterator[Callable[[int], None]]:
    """`killed_at_teardown(group)`: a process group SIGKILLed after the test, however it ends."""
    groups: list[int] = []
    yield groups.append
    for group in groups:
        with suppress(ProcessLookupError):
            os.killpg(group, signal.SIGKILL)


def test_a_restarted_agent_stops_the_flow_a_killed_agent_left_before_running_another(
    server: LiveServer,
    api: Api,
    admin: Account,
    machine: Machine,
    flows: Path,
    agents: StartAgent,
    tmp_path: Path,
    killed_at_teardown: Callable[[int], None],
) -> None:
    key, connection = machine.key, machine.connection
    shared = {"log": str(tmp_path / "flows.log"), "lock": str(tmp_path / "machine.lock")}
    pids = tmp_path / "first.pids"
    first = queue_run(
        api,
        admin,
        connection,
        "exclusive",
        {**shared, "pids": str(pids), "seconds": 120, "stubborn": True},
    )
    agent = agents(server.url, key, flows)
    wait_until(lambda: pids.exists() and " " in pids.read_text(), timeout=30)
    leader, child = (int(pid) for pid in pids.read_text().split())
    killed_at_teardown(leader)

    agent.kill()  # SIGKILL: it stops nothing
    assert process_running(leader) and process_running(child)
    second = queue_run(
        api, admin, connection, "exclusive", {**shared, "pids": str(tmp_path / "2"), "seconds": 0.5}
    )
    restarted = agents(server.url, key, flows)
    restarted.wait_for(f"finished run {second} SUCCEEDED", timeout=60)

    # The leftover flow was stopped (SIGTERM ignored: killed after the grace), group and all.
    assert not process_running(leader) and not process_running(child)
    events = [line.split()[:2] for line in (tmp_path / "flows.log").read_text().splitlines()]
    assert events == [["start", first], ["start", second], ["stop", second]]
    steps = [
        f"stopping the flow of run {first} that the previous agent left running"
        f" \\(process group {leader}\\)",
        f"stopped the flow of run {first}$",
        f"finished run {first} FAILED: agent restarted",
        f"claimed run {second} ",
    ]
    lines = restarted.lines
    order = [lines.index(restarted.wait_for(step)) for step in steps]
    assert order == sorted(order), lines
    old = read_run(api, admin, first)
    assert (old["status"], old["failureReason"]) == ("FAILED", "agent restarted")
    assert read_run(api, admin, second)["output"] == {"run": second}
    assert restarted.interrupt() == 0
    assert list((flows.parent / "agents").glob("*/flow.json")) == []  # nothing left running


def test_a_second_agent_for_the_same_machine_exits_and_the_first_keeps_working(
    server: LiveServer,
    api: Api,
    admin: Account,
    machine: Machine,
    flows: Path,
    agents: StartAgent,
) -> None:
    key, connection = machine.key, machine.connection
    first = agents(server.url, key, flows)
    first.wait_for("started: machine")

    second = agents(server.url, key, flows, key_in_env=False)
    assert second.finish() == 1
    (message,) = second.errors
    assert message.startswith(
        "error: another agent is already running for this machine on this host"
        f" (pid {first.process.pid}, lock "
    ), message
    assert key not in message
    assert second.lines == []  # it never reached the server

    run_id = queue_run(api, admin, connection, "quick", {})
    first.wait_for(f"finished run {run_id} SUCCEEDED")
    assert first.interrupt() == 0


def test_a_run_survives_a_server_outage_longer_than_the_machine_timeout(
    tmp_path: Path, database_url: str, flows: Path, agents: StartAgent
) -> None:
    settings = {"MG_MACHINE_TIMEOUT": str(MACHINE_TIMEOUT), "MG_SWEEP_INTERVAL_MS": "100"}
    server = ServerProcess(tmp_path / "server", database_url, SECRET, settings=settings).start()
    try:
        machine = MachineOn.register(server, "OUTAGE-VM")
        agent = agents(server.base_url, machine.key, flows)
        agent.wait_for("started: machine OUTAGE-VM")
        executions, release = tmp_path / "executions", tmp_path / "release"
        run_id = machine.start_run(
            "until-released", {"executions": str(executions), "release": str(release)}
        )
        wait_until(lambda: executions.exists() and executions.read_text() != "", timeout=30)

        server.kill()
        down_since = time.monotonic()
        agent.wait_for(f"reconnecting to {server.url} in ")
        time.sleep(max(0.0, MACHINE_TIMEOUT + 1 - (time.monotonic() - down_since)))
        server.start()
        agent.wait_for(f"reconnected to {server.url}", timeout=MACHINE_TIMEOUT + 10)
        time.sleep(1)  # ten sweeps meanwhile
        assert machine.run(run_id)["status"] == "RUNNING"

        release.touch()
        agent.wait_for(f"finished run {run_id} SUCCEEDED")
        run = machine.run(run_id)
        assert (run["status"], run["output"]) == ("SUCCEEDED", {"released": True})
        assert executions.read_text().splitlines() == [run_id]  # the flow ran once
        assert not agent.matching("was ended on the server")
        assert agent.interrupt() == 0
        assert len(agent.matching("claimed run ")) == 1
    finally:
        server.stop()
