"""Real `machine-groups agent` processes on the live channel: runs pushed at once, a
cancel stopping the flow before any heartbeat could carry it, maintenance, a machine
leaving its group, presence by the socket, and HTTP long polling by choice or when
WebSockets are refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from app.domain.clock import ManualClock
from tests.api.agent_helpers import (
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
from tests.api.queue_helpers import REMOVE_MACHINE, add_machine, set_maintenance
from tests.api.test_subscriptions import QUEUE_STATUS, counts, socket, status
from tests.processes import CANCEL_RUN, write_flow
from tests.server import LiveServer

# Writes its pid where the inputs say, then works until it is stopped (at most 20 s).
LONG_TASK = """
with open(inputs["pid_file"], "w") as handle:
    handle.write(str(os.getpid()))
time.sleep(inputs.get("seconds", 20))
print(json.dumps({"done": True}))
"""
QUICK = 'print(json.dumps({"ok": True}))'
# Heartbeats so rare that only the channel can bring a cancel in time.
RARE_HEARTBEAT = 20.0
# What "at once" is held to on a shared, loaded machine: far under what the slower path
# would take (the next heartbeat; a 30 s machine timeout with no sweeps), so a pass still
# proves the push without measuring the machine.
AT_ONCE = RARE_HEARTBEAT / 4


@pytest.fixture
def clock() -> ManualClock:
    """The live server's clock: real time (overrides the frozen test clock)."""
    return RealTimeClock()


@pytest.fixture
def flows(tmp_path: Path) -> Path:
    folder = tmp_path / "flows"
    write_flow(folder, "long-task", LONG_TASK)
    write_flow(folder, "quick", QUICK)
    return folder


@pytest.fixture
def group_of_one(
    api: Api,
    admin: Account,
    make_group: Callable[..., str],
    make_machine: Callable[..., tuple[str, str]],
) -> tuple[str, str, str, str]:
    """(group id, machine id, machine key, connection id): a group of one machine."""
    group_id = make_group()
    machine_id, key = make_machine()
    assert add_machine(api, machine_id, group_id, as_=admin)["errors"] == []
    return group_id, machine_id, key, open_connection(api, admin, group=group_id)


def test_a_run_is_pushed_and_a_cancel_stops_its_flow_before_any_heartbeat(
    server: LiveServer,
    api: Api,
    admin: Account,
    group_of_one: tuple[str, str, str, str],
    flows: Path,
    agents: StartAgent,
    tmp_path: Path,
) -> None:
    _group, _machine, key, connection = group_of_one
    agent = agents(server.url, key, flows, heartbeat=RARE_HEARTBEAT)
    agent.wait_for("started: machine .* \\(live channel\\)")
    quick = queue_run(api, admin, connection, "quick", {})
    agent.wait_for(f"finished run {quick} SUCCEEDED", timeout=10)

    pid_file = tmp_path / "long.pid"
    run_id = queue_run(api, admin, connection, "long-task", {"pid_file": str(pid_file)})
    pid = read_pid(pid_file, timeout=10)
    began = time.monotonic()
    api.ok(CANCEL_RUN, {"id": run_id}, as_=admin)
    wait_until(lambda: pid_gone(pid), timeout=AT_ONCE)
    assert time.monotonic() - began < AT_ONCE
    agent.wait_for(f"run {run_id} was ended on the server: stopping its flow")
    run = read_run(api, admin, run_id)
    assert (run["status"], run["failureReason"]) == ("CANCELLED", "CANCELLED_BY_USER")
    assert agent.interrupt() == 0
    assert not agent.matching("HTTP long polling")


def test_maintenance_holds_runs_back_and_they_follow_when_it_ends(
    server: LiveServer,
    api: Api,
    admin: Account,
    group_of_one: tuple[str, str, str, str],
    flows: Path,
    agents: StartAgent,
) -> None:
    group_id, _machine, key, connection = group_of_one
    set_maintenance(api, group_id, True, as_=admin)
    agent = agents(server.url, key, flows)
    agent.wait_for("started: machine .* is MAINTENANCE")
    run_id = queue_run(api, admin, connection, "quick", {})
    time.sleep(1.0)
    assert read_run(api, admin, run_id)["status"] == "QUEUED"
    assert not agent.matching("claimed run")
    set_maintenance(api, group_id, False, as_=admin)
    agent.wait_for(f"finished run {run_id} SUCCEEDED", timeout=10)
    assert agent.interrupt() == 0


def test_a_machine_that_left_its_group_gets_none_of_its_runs_but_its_own(
    server: LiveServer,
    api: Api,
    admin: Account,
    make_machine: Callable[..., tuple[str, str]],
    group_of_one: tuple[str, str, str, str],
    flows: Path,
    agents: StartAgent,
) -> None:
    group_id, machine_id, key, connection = group_of_one
    other, _other_key = make_machine()  # stays in the group, without an agent
    assert add_machine(api, other, group_id, as_=admin)["errors"] == []
    agent = agents(server.url, key, flows)
    agent.wait_for("started: machine")
    api.ok(REMOVE_MACHINE, {"m": machine_id}, as_=admin)
    group_run = queue_run(api, admin, connection, "quick", {})
    own = open_connection(api, admin, machine=machine_id)
    own_run = queue_run(api, admin, own, "quick", {})
    agent.wait_for(f"finished run {own_run} SUCCEEDED", timeout=10)
    assert read_run(api, admin, group_run)["status"] == "QUEUED"
    assert not agent.matching(f"claimed run {group_run}")
    assert agent.interrupt() == 0


def test_a_killed_agent_makes_its_machine_offline_at_once(
    server: LiveServer,
    api: Api,
    admin: Account,
    group_of_one: tuple[str, str, str, str],
    flows: Path,
    agents: StartAgent,
) -> None:
    group_id, _machine, key, _connection = group_of_one
    agent = agents(server.url, key, flows)
    agent.wait_for("started: machine")
    watcher = socket(server, admin)
    watcher.subscribe(QUEUE_STATUS, {"g": group_id})
    assert counts(status(watcher))[3:] == (1, 1)  # online, idle
    agent.kill()  # SIGKILL: the kernel closes its socket
    began = time.monotonic()
    message = status(watcher)
    assert counts(message)[3:] == (0, 0), message
    assert time.monotonic() - began < AT_ONCE
    watcher.close()


def test_an_agent_long_polls_over_http_when_told_to(
    server: LiveServer,
    api: Api,
    admin: Account,
    group_of_one: tuple[str, str, str, str],
    flows: Path,
    agents: StartAgent,
) -> None:
    _group, _machine, key, connection = group_of_one
    agent = agents(server.url, key, flows, options=["--http"])
    agent.wait_for("started: machine .* \\(HTTP long polling\\)")
    run_id = queue_run(api, admin, connection, "quick", {})
    agent.wait_for(f"finished run {run_id} SUCCEEDED", timeout=10)
    assert agent.interrupt() == 0


@contextlib.contextmanager
def refusing_websockets(port: int) -> Iterator[str]:
    """A proxy to 127.0.0.1:`port` that answers WebSocket upgrades 403 (as some proxies
    do) and passes everything else through; yields its /graphql URL."""
    loop = asyncio.new_event_loop()
    started = threading.Event()
    address: list[int] = []

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        if b"upgrade: websocket" in head.lower():
            writer.write(
                b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            )
            await writer.drain()
            writer.close()
            return
        upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", port)
        upstream_writer.write(head)
        await asyncio.gather(pipe(reader, upstream_writer), pipe(upstream_reader, writer))

    stopping = asyncio.Event()

    async def serve() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        address.append(server.sockets[0].getsockname()[1])
        started.set()
        async with server:
            await stopping.wait()

    thread = threading.Thread(target=lambda: loop.run_until_complete(serve()), daemon=True)
    thread.start()
    assert started.wait(10)
    try:
        yield f"http://127.0.0.1:{address[0]}/graphql"
    finally:
        loop.call_soon_threadsafe(stopping.set)
        thread.join(10)


def test_an_agent_falls_back_to_http_where_websockets_are_refused(
    server: LiveServer,
    api: Api,
    admin: Account,
    group_of_one: tuple[str, str, str, str],
    flows: Path,
    agents: StartAgent,
) -> None:
    _group, _machine, key, connection = group_of_one
    with refusing_websockets(server.port) as url:
        agent = agents(url, key, flows)
        agent.wait_for("WebSockets refused .*: falling back to HTTP long polling", timeout=30)
        agent.wait_for("started: machine .* \\(HTTP long polling\\)")
        run_id = queue_run(api, admin, connection, "quick", {})
        agent.wait_for(f"finished run {run_id} SUCCEEDED", timeout=10)
        assert agent.interrupt() == 0


def test_a_second_agent_on_another_host_waits_and_the_first_keeps_the_machine(
    server: LiveServer,
    api: Api,
    admin: Account,
    group_of_one: tuple[str, str, str, str],
    flows: Path,
    agents: StartAgent,
    tmp_path: Path,
) -> None:
    _group, _machine, key, connection = group_of_one
    first = agents(server.url, key, flows)
    first.wait_for("started: machine")
    # Another host: its own state folder, so the host's lock does not stop it first.
    second = agents(server.url, key, flows, state_dir=tmp_path / "other-host")
    second.wait_for("another agent holds this machine's channel .*; retrying for 60 s")
    run_id = queue_run(api, admin, connection, "quick", {})
    first.wait_for(f"finished run {run_id} SUCCEEDED", timeout=10)
    assert not second.matching("claimed run")
    second.kill()
    assert first.interrupt() == 0
