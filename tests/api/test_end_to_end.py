"""End to end: real `machine-groups agent` processes work the queue of a live server.

Everything crosses real sockets: GraphQL over HTTP for users and agents, graphql-transport-ws
for the operator watching the queue, and flows run as programs by the agents.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from app.domain.clock import ManualClock
from tests.api.agent_helpers import (
    MachineOn,
    RealTimeClock,
    StartAgent,
    open_connection,
    pid_gone,
    queue_run,
    read_pid,
    read_run,
    wait_until,
)
from tests.api.conftest import Account, Api
from tests.processes import (
    ADD_TO_GROUP,
    CANCEL_RUN,
    CLAIM,
    ServerProcess,
    write_flow,
)
from tests.server import LiveServer
from tests.ws import GraphQLSocket

GROUP_PASSWORD = "a long group secret"
SECRET = "end-to-end-secret-key-0123456789abcdef0123456789"
FINAL = {"SUCCEEDED", "FAILED", "CANCELLED", "TIMED_OUT"}

QUEUE_STATUS = """
subscription($g: ID!) {
  queueStatus(groupId: $g) {
    queuedCount runningCount machineCount onlineMachineCount idleMachineCount
    changedRun { id status }
  }
}"""

# A report that sleeps, so that two agents visibly work at once and the order shows.
SLOW_REPORT = 'time.sleep(1.5)\nprint(json.dumps({"flow": "slow-report", "inputs": inputs}))'
QUICK_REPORT = 'time.sleep(0.5)\nprint(json.dumps({"flow": "quick-report", "inputs": inputs}))'
BROKEN_REPORT = """
time.sleep(0.5)
print(json.dumps({"partial": True}))
print("boom: the invoice form was missing", file=sys.stderr)
sys.exit(3)
"""
PLAIN_TEXT = 'print("hello, not JSON")'
# Writes its pid where the inputs say, then works until it is stopped (at most 20 s).
LONG_TASK = """
with open(inputs["pid_file"], "w") as handle:
    handle.write(str(os.getpid()))
time.sleep(inputs.get("seconds", 20))
print(json.dumps({"flow": "long-task", "done": True}))
"""


@pytest.fixture
def clock() -> ManualClock:
    """The live server's clock: real time (overrides the frozen test clock)."""
    return RealTimeClock()


@pytest.fixture
def flows(tmp_path: Path) -> Path:
    """The flows folder the agents run programs from."""
    folder = tmp_path / "flows"
    for name, body in {
        "slow-report": SLOW_REPORT,
        "quick-report": QUICK_REPORT,
        "broken-report": BROKEN_REPORT,
        "plain-text": PLAIN_TEXT,
        "long-task": LONG_TASK,
    }.items():
        write_flow(folder, name, body)
    return folder


def _queue_messages(
    socket: GraphQLSocket, run_ids: set[str], timeout: float
) -> list[dict[str, Any]]:
    """queueStatus messages until every run in `run_ids` has shown a final status."""
    deadline = time.monotonic() + timeout
    messages: list[dict[str, Any]] = []
    finished: set[str] = set()
    while finished != run_ids:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"runs still not final after {timeout} s: {messages}"
        data = socket.next_data(timeout=remaining)
        assert data is not None, "the queueStatus stream ended"
        message: dict[str, Any] = data["queueStatus"]
        messages.append(message)
        changed = message["changedRun"]
        if changed is not None and changed["status"] in FINAL:
            finished.add(changed["id"])
    return messages


def test_two_agents_work_a_group_queue_in_priority_order(
    server: LiveServer,
    api: Api,
    admin: Account,
    make_group: Callable[..., str],
    make_machine: Callable[..., tuple[str, str]],
    flows: Path,
    agents: StartAgent,
) -> None:
    group = make_group(name="Finance bots")
    machines = [make_machine(name=f"FIN-VM-0{number}") for number in (1, 2)]
    for machine_id, _key in machines:
        api.ok(ADD_TO_GROUP, {"m": machine_id, "g": group, "p": GROUP_PASSWORD}, as_=admin)
    connection = open_connection(api, admin, group=group)
    plan = [  # started in this order, before any agent runs: LOW first, so FIFO would fail
        ("LOW", "quick-report", {"invoice": 1}),
        ("HIGH", "slow-report", {"invoice": 2}),
        ("NORMAL", "broken-report", {"invoice": 3}),
    ]

    with GraphQLSocket(server.url, admin.token) as socket:
        assert socket.acknowledged()
        socket.subscribe(QUEUE_STATUS, {"g": group})
        snapshot = socket.next_data()
        assert snapshot is not None
        assert snapshot["queueStatus"] == {
            "queuedCount": 0,
            "runningCount": 0,
            "machineCount": 2,
            "onlineMachineCount": 0,
            "idleMachineCount": 0,
            "changedRun": None,
        }
        run_of: dict[str, str] = {}  # priority -> run id
        messages: list[dict[str, Any]] = []
        for count, (priority, flow, inputs) in enumerate(plan, start=1):
            run_of[priority] = queue_run(api, admin, connection, flow, inputs, priority)
            queued = socket.next_data()
            assert queued is not None
            messages.append(queued["queueStatus"])
            assert messages[-1]["changedRun"] == {"id": run_of[priority], "status": "QUEUED"}
            assert messages[-1]["queuedCount"] == count

        first = agents(server.url, machines[0][1], flows)
        second = agents(
            server.url.removesuffix("/graphql"), machines[1][1], flows, key_in_env=False
        )
        messages += _queue_messages(socket, set(run_of.values()), timeout=60)

    # The server: claimed by priority, each run ended once with what its flow wrote.
    runs = {priority: read_run(api, admin, run_id) for priority, run_id in run_of.items()}
    by_start = sorted(runs.values(), key=lambda run: run["startedAt"])
    assert [run["priority"] for run in by_start] == ["HIGH", "NORMAL", "LOW"]
    assert {run["machine"]["id"] for run in runs.values()} <= {m for m, _key in machines}
    assert runs["HIGH"]["status"] == "SUCCEEDED"
    assert runs["HIGH"]["output"] == {"flow": "slow-report", "inputs": {"invoice": 2}}
    assert runs["LOW"]["status"] == "SUCCEEDED"
    assert runs["LOW"]["output"] == {"flow": "quick-report", "inputs": {"invoice": 1}}
    assert runs["NORMAL"]["status"] == "FAILED"
    assert runs["NORMAL"]["output"] == {"partial": True}
    reason = runs["NORMAL"]["failureReason"]
    assert "exit code 3" in reason and "boom: the invoice form was missing" in reason
    for run in runs.values():
        assert run["finishedAt"] >= run["startedAt"]

    # The operator's stream: each run QUEUED -> RUNNING -> final, counts that add up.
    transitions = {
        run_id: [
            m["changedRun"]["status"]
            for m in messages
            if m["changedRun"] and m["changedRun"]["id"] == run_id
        ]
        for run_id in run_of.values()
    }
    assert transitions[run_of["HIGH"]] == ["QUEUED", "RUNNING", "SUCCEEDED"]
    assert transitions[run_of["NORMAL"]] == ["QUEUED", "RUNNING", "FAILED"]
    assert transitions[run_of["LOW"]] == ["QUEUED", "RUNNING", "SUCCEEDED"]
    running_order = [
        m["changedRun"]["id"]
        for m in messages
        if m["changedRun"] and m["changedRun"]["status"] == "RUNNING"
    ]
    assert running_order == [run_of["HIGH"], run_of["NORMAL"], run_of["LOW"]]
    # One message per machine coming online (each reads the counts when it is sent).
    online = [m["onlineMachineCount"] for m in messages if m["changedRun"] is None]
    assert len(online) == 2 and online[-1] == 2 and online == sorted(online)
    finals_seen = 0
    for message in messages:
        if message["changedRun"] and message["changedRun"]["status"] in FINAL:
            finals_seen += 1
        assert message["machineCount"] == 2
        assert message["runningCount"] <= message["onlineMachineCount"] <= 2
        assert (
            message["idleMachineCount"] == message["onlineMachineCount"] - message["runningCount"]
        )
        assert message["queuedCount"] + message["runningCount"] + finals_seen <= 3
    assert [messages[-1]["queuedCount"], messages[-1]["runningCount"]] == [0, 0]
    queued_once_all_started = [m["queuedCount"] for m in messages[len(plan) - 1 :]]
    assert queued_once_all_started == sorted(queued_once_all_started, reverse=True)

    # The agents: each run claimed and finished exactly once, then a clean Ctrl-C.
    assert first.interrupt() == 0
    assert second.interrupt() == 0
    lines = first.lines + second.lines
    for priority, flow, _inputs in plan:
        run_id = run_of[priority]
        claimed = [
            line
            for line in lines
            if f"claimed run {run_id} flow {flow} priority {priority}" in line
        ]
        finished = [line for line in lines if f"finished run {run_id} " in line]
        assert len(claimed) == 1, lines
        assert len(finished) == 1, lines
        assert runs[priority]["status"] in finished[0]
    for agent, (machine_id, _key) in zip((first, second), machines, strict=True):
        assert f"({machine_id}) is ONLINE" in agent.lines[0]
        assert "started: machine FIN-VM-0" in agent.lines[0]
        assert any("stopping (SIGINT)" in line for line in agent.lines)
        assert agent.lines[-1].endswith(" stopped")
        assert agent.errors == []


def test_agent_reports_a_flow_that_cannot_run_or_writes_no_json(
    server: LiveServer,
    api: Api,
    admin: Account,
    make_machine: Callable[..., tuple[str, str]],
    flows: Path,
    agents: StartAgent,
) -> None:
    machine_id, key = make_machine()
    connection = open_connection(api, admin, machine=machine_id)
    (flows / "not-executable").write_text("#!/bin/sh\necho hi\n")
    missing = queue_run(api, admin, connection, "no-such-flow", None, "HIGH")
    not_executable = queue_run(api, admin, connection, "not-executable", None, "NORMAL")
    plain = queue_run(api, admin, connection, "plain-text", {"x": 1}, "LOW")

    agent = agents(server.url, key, flows)
    agent.wait_for(f"finished run {plain} SUCCEEDED")

    run = read_run(api, admin, missing)
    assert run["status"] == "FAILED"
    assert run["failureReason"] == f"no program named 'no-such-flow' in {flows}"
    assert read_run(api, admin, not_executable)["failureReason"] == (
        f"{flows / 'not-executable'} is not executable: make it so"
        f" (chmod +x {flows / 'not-executable'})"
    )
    run = read_run(api, admin, plain)
    assert run["status"] == "SUCCEEDED"
    assert run["output"] == {"stdout": "hello, not JSON\n"}
    assert agent.interrupt() == 0


def test_cancelling_a_running_run_stops_its_flow(
    server: LiveServer,
    api: Api,
    admin: Account,
    make_machine: Callable[..., tuple[str, str]],
    flows: Path,
    agents: StartAgent,
    tmp_path: Path,
) -> None:
    machine_id, key = make_machine()
    connection = open_connection(api, admin, machine=machine_id)
    pid_file = tmp_path / "long-task.pid"
    run_id = queue_run(api, admin, connection, "long-task", {"pid_file": str(pid_file)})
    agent = agents(server.url, key, flows)
    pid = read_pid(pid_file)

    api.ok(CANCEL_RUN, {"id": run_id}, as_=admin)
    agent.wait_for(f"run {run_id} was ended on the server: stopping its flow", timeout=20)
    line = agent.wait_for(f"finished run {run_id}: already ended on the server")
    assert "CANCELLED_BY_USER" in line

    assert pid_gone(pid)
    run = read_run(api, admin, run_id)
    assert (run["status"], run["failureReason"]) == ("CANCELLED", "CANCELLED_BY_USER")
    assert agent.interrupt() == 0


def test_first_ctrl_c_lets_the_running_flow_finish(
    server: LiveServer,
    api: Api,
    admin: Account,
    make_machine: Callable[..., tuple[str, str]],
    flows: Path,
    agents: StartAgent,
    tmp_path: Path,
) -> None:
    machine_id, key = make_machine()
    connection = open_connection(api, admin, machine=machine_id)
    pid_file = tmp_path / "long-task.pid"
    run_id = queue_run(
        api, admin, connection, "long-task", {"pid_file": str(pid_file), "seconds": 1.5}
    )
    queued_later = queue_run(api, admin, connection, "quick-report", {})
    agent = agents(server.url, key, flows)
    read_pid(pid_file)

    assert agent.interrupt() == 0

    assert agent.matching(f"finished run {run_id} SUCCEEDED")
    run = read_run(api, admin, run_id)
    assert run["status"] == "SUCCEEDED"
    assert run["output"] == {"flow": "long-task", "done": True}
    assert read_run(api, admin, queued_later)["status"] == "QUEUED"  # it stopped claiming


def test_second_ctrl_c_kills_the_running_flow_and_reports_it_failed(
    server: LiveServer,
    api: Api,
    admin: Account,
    make_machine: Callable[..., tuple[str, str]],
    flows: Path,
    agents: StartAgent,
    tmp_path: Path,
) -> None:
    machine_id, key = make_machine()
    connection = open_connection(api, admin, machine=machine_id)
    pid_file = tmp_path / "long-task.pid"
    run_id = queue_run(api, admin, connection, "long-task", {"pid_file": str(pid_file)})
    agent = agents(server.url, key, flows)
    pid = read_pid(pid_file)

    agent.process.send_signal(signal.SIGINT)  # finish the run first...
    agent.wait_for("stopping \\(SIGINT\\)")
    assert read_run(api, admin, run_id)["status"] == "RUNNING"
    assert agent.interrupt() == 0  # ...a second one: kill it

    assert pid_gone(pid)
    run = read_run(api, admin, run_id)
    assert run["status"] == "FAILED"
    assert run["failureReason"].startswith("killed: the agent was told to stop twice")
    assert "SIGTERM" in run["failureReason"]
    assert agent.matching(f"finished run {run_id} FAILED: killed")


def test_restarted_agent_fails_the_run_it_held_instead_of_running_it_again(
    server: LiveServer,
    api: Api,
    admin: Account,
    make_machine: Callable[..., tuple[str, str]],
    flows: Path,
    agents: StartAgent,
) -> None:
    machine_id, key = make_machine()
    connection = open_connection(api, admin, machine=machine_id)
    run_id = queue_run(api, admin, connection, "quick-report", {})
    # What an agent that died mid-run left behind: the run RUNNING on its machine.
    claimed = api.ok(CLAIM, {"w": 0}, as_=key)["run"]
    assert claimed == {"id": run_id, "status": "RUNNING"}

    agent = agents(server.url, key, flows)
    agent.wait_for(f"finished run {run_id} FAILED: agent restarted")

    run = read_run(api, admin, run_id)
    assert (run["status"], run["failureReason"], run["output"]) == (
        "FAILED",
        "agent restarted",
        None,
    )
    assert not agent.matching(f"claimed run {run_id}")
    assert agent.interrupt() == 0


def test_stopping_an_idle_agent_leaves_no_claim_waiting_on_the_server(
    server: LiveServer,
    api: Api,
    admin: Account,
    make_machine: Callable[..., tuple[str, str]],
    flows: Path,
    agents: StartAgent,
) -> None:
    machine_id, key = make_machine()
    connection = open_connection(api, admin, machine=machine_id)
    agent = agents(server.url, key, flows)
    agent.wait_for("started: machine")
    wait_until(lambda: server.state.bus.listener_count() == 1)  # its claim is waiting

    assert agent.interrupt() == 0

    # The server lets go of the claim the agent hung up on, and gives its run to nobody.
    wait_until(lambda: server.state.bus.listener_count() == 0)
    run_id = queue_run(api, admin, connection, "quick-report", {})
    time.sleep(0.5)  # a claim left waiting would take the run at once
    assert read_run(api, admin, run_id)["status"] == "QUEUED"


def test_agent_with_a_wrong_key_exits_with_an_error(
    server: LiveServer, flows: Path, agents: StartAgent
) -> None:
    agent = agents(server.url, "mgk_not-a-key-of-any-machine", flows)

    assert agent.finish() == 1
    assert any("refused the machine key" in line for line in agent.errors), agent.errors


def test_agent_reconnects_after_the_server_restarts(
    tmp_path: Path, flows: Path, agents: StartAgent
) -> None:
    server = ServerProcess(tmp_path, f"sqlite+aiosqlite:///{tmp_path / 'e2e.db'}", SECRET).start()
    try:
        machine = MachineOn.register(server, "RESTART-VM")
        agent = agents(f"{server.base_url}/", machine.key, flows)
        agent.wait_for("started: machine RESTART-VM")
        before = machine.start_run("quick-report", {"when": "before the restart"})
        agent.wait_for(f"finished run {before} SUCCEEDED")

        server.kill()
        agent.wait_for(f"reconnecting to {server.url} in ")
        server.start()
        agent.wait_for(f"reconnected to {server.url}")
        after = machine.start_run("quick-report", {"when": "after the restart"})
        agent.wait_for(f"finished run {after} SUCCEEDED")

        run = machine.run(after)
        assert run["status"] == "SUCCEEDED"
        assert run["output"] == {"flow": "quick-report", "inputs": {"when": "after the restart"}}
        assert agent.interrupt() == 0
        assert len(agent.matching("claimed run ")) == 2
    finally:
        server.stop()
