"""The agent channel (`agentChannel`): runs pushed at once, confirmed before they start,
cancels pushed, presence by the socket, and what happens to an offer when things break.

Raw graphql-transport-ws clients stand for agents here; tests/api/test_agent_on_channel.py
runs real `machine-groups agent` processes.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from app.queue.sweeper import OFFER_SECONDS, sweep
from tests.api.agent_helpers import MachineOn
from tests.api.channel_helpers import AgentSocket
from tests.api.conftest import Account, Api
from tests.api.queue_helpers import (
    CANCEL_RUN,
    MakeGroup,
    MakeMachine,
    Pool,
    claim,
    pool,
    queue_ids,
    run,
    set_maintenance,
    started,
)
from tests.api.test_subscriptions import QUEUE_STATUS, counts, socket, status
from tests.processes import ServerProcess
from tests.server import LiveServer

SECRET = "agent-channel-secret-key-0123456789abcdef0123456789"


@pytest.fixture
def ready(api: Api, admin: Account, make_group: MakeGroup, make_machine: MakeMachine) -> Pool:
    """A group of two machines and a connection to it."""
    return pool(api, admin, make_group, make_machine, machines=2)


def agent(server: LiveServer, key: str, agent_id: str = "agent-1") -> AgentSocket:
    """An agent's channel, past its READY message."""
    channel = AgentSocket(server.url, key, agent_id)
    assert channel.next()["kind"] == "READY"
    return channel


def wait_for(condition: Any, timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the condition did not hold in time"
        time.sleep(0.02)


def test_a_run_is_pushed_confirmed_completed_and_the_next_follows(
    server: LiveServer, api: Api, admin: Account, ready: Pool
) -> None:
    channel = AgentSocket(server.url, ready.key)
    first = channel.next()
    assert (first["kind"], first["machine"]["id"], first["run"]) == (
        "READY",
        ready.machine_id,
        None,
    )
    one = started(api, ready.connection_id, as_=admin)["id"]
    two = started(api, ready.connection_id, as_=admin)["id"]
    offered = channel.next()
    assert (offered["kind"], offered["runId"], offered["run"]["flowName"]) == (
        "RUN",
        one,
        "Invoice",
    )
    # Offered is held by the machine: RUNNING for everyone; nobody else can take it.
    assert run(api, one, as_=admin)["status"] == "RUNNING"
    assert channel.confirm(one)["errors"] == []
    assert channel.confirm(one)["errors"][0]["code"] == "CONFLICT"  # once only
    assert channel.complete(one)["run"]["status"] == "SUCCEEDED"
    # Its own report is not echoed: the next message is the next run.
    following = channel.next()
    assert (following["kind"], following["runId"]) == ("RUN", two)
    channel.close()


def test_a_run_must_be_confirmed_before_it_is_completed(
    server: LiveServer, api: Api, admin: Account, ready: Pool
) -> None:
    channel = agent(server, ready.key)
    run_id = started(api, ready.connection_id, as_=admin)["id"]
    assert channel.next()["runId"] == run_id
    assert channel.complete(run_id)["errors"][0]["code"] == "CONFLICT"
    channel.close()


def test_cancel_is_pushed_the_moment_it_commits(
    server: LiveServer, api: Api, admin: Account, ready: Pool
) -> None:
    channel = agent(server, ready.key)
    run_id = started(api, ready.connection_id, as_=admin)["id"]
    assert channel.next()["runId"] == run_id
    assert channel.confirm(run_id)["errors"] == []
    began = time.monotonic()
    api.ok(CANCEL_RUN, {"id": run_id}, as_=admin)
    ended = channel.next()
    assert time.monotonic() - began < 5  # nothing but the push could bring it (no heartbeat)
    assert (ended["kind"], ended["runId"], ended["run"]["status"]) == (
        "RUN_ENDED",
        run_id,
        "CANCELLED",
    )
    assert ended["run"]["failureReason"] == "CANCELLED_BY_USER"
    assert channel.complete(run_id)["errors"][0]["code"] == "RUN_NOT_ACTIVE"
    channel.close()


def test_an_offer_cancelled_before_confirmation_is_refused(
    server: LiveServer, api: Api, admin: Account, ready: Pool
) -> None:
    channel = agent(server, ready.key)
    run_id = started(api, ready.connection_id, as_=admin)["id"]
    assert channel.next()["runId"] == run_id
    api.ok(CANCEL_RUN, {"id": run_id}, as_=admin)
    assert channel.next()["kind"] == "RUN_ENDED"
    assert channel.confirm(run_id)["errors"][0]["code"] == "RUN_NOT_ACTIVE"
    channel.close()


def test_nothing_is_pushed_in_maintenance_and_runs_follow_when_it_ends(
    server: LiveServer, api: Api, admin: Account, ready: Pool
) -> None:
    set_maintenance(api, ready.group_id, True, as_=admin)
    channel = agent(server, ready.key)
    run_id = started(api, ready.connection_id, as_=admin)["id"]
    with pytest.raises(TimeoutError):
        channel.next(timeout=0.5)
    set_maintenance(api, ready.group_id, False, as_=admin)
    assert channel.next()["runId"] == run_id
    channel.close()


def test_closing_the_socket_makes_the_machine_offline_at_once(
    server: LiveServer, api: Api, admin: Account, ready: Pool
) -> None:
    watcher = socket(server, admin)
    watcher.subscribe(QUEUE_STATUS, {"g": ready.group_id})
    assert counts(status(watcher))[3] == 2  # both heartbeated over HTTP
    # An HTTP heartbeat would keep the second online for MG_MACHINE_TIMEOUT; its channel
    # decides from when it opens.
    second = agent(server, ready.machines[1][1])
    second.close()
    message = status(watcher)
    assert counts(message)[3] == 1, message
    watcher.close()


def test_a_socket_that_dies_before_confirming_returns_the_run_to_its_place(
    server: LiveServer, api: Api, admin: Account, ready: Pool
) -> None:
    first = agent(server, ready.key)
    run_id = started(api, ready.connection_id, as_=admin)["id"]
    later = started(api, ready.connection_id, as_=admin)["id"]
    assert first.next()["runId"] == run_id
    first.close()  # the push reached it, its confirmation never left
    wait_for(lambda: run(api, run_id, as_=admin)["status"] == "QUEUED")
    assert queue_ids(api, ready.group_id, as_=admin) == [run_id, later]  # its old place
    # The same agent process, reconnected, cannot confirm it any more...
    again = agent(server, ready.key)
    offered = again.next()
    assert offered["runId"] == run_id  # ...but it is offered afresh, started once
    assert again.confirm(offered["runId"])["errors"] == []
    again.close()


def test_a_late_confirmation_after_the_offer_was_withdrawn_is_refused(
    server: LiveServer, api: Api, admin: Account, ready: Pool
) -> None:
    channel = agent(server, ready.key)
    run_id = started(api, ready.connection_id, as_=admin)["id"]
    assert channel.next()["runId"] == run_id
    # (Maintenance keeps the run from being offered again to this idle machine at once.)
    set_maintenance(api, ready.group_id, True, as_=admin)
    server.clock.advance(seconds=OFFER_SECONDS + 1)
    server.run(sweep(server.state.hub))
    withdrawn = channel.next()
    assert (withdrawn["kind"], withdrawn["runId"], withdrawn["run"]) == ("RUN_ENDED", run_id, None)
    assert channel.confirm(run_id)["errors"][0]["code"] == "LEASE_LOST"
    channel.close()


def test_a_lost_confirmation_answer_leaves_the_run_with_the_machine(
    server: LiveServer, api: Api, admin: Account, ready: Pool
) -> None:
    channel = agent(server, ready.key)
    run_id = started(api, ready.connection_id, as_=admin)["id"]
    assert channel.next()["runId"] == run_id
    assert channel.confirm(run_id)["errors"] == []  # committed; say its answer was lost
    channel.close()
    time.sleep(0.2)
    assert run(api, run_id, as_=admin)["status"] == "RUNNING"
    again = AgentSocket(server.url, ready.key)
    first = again.next()
    # The agent learns the machine holds it; it never started it, so it reports it failed.
    assert (first["kind"], first["run"]["id"], first["runId"]) == ("READY", run_id, run_id)
    again.close()


def test_a_second_agent_process_is_refused_while_the_first_holds_the_channel(
    server: LiveServer, api: Api, admin: Account, ready: Pool
) -> None:
    first = agent(server, ready.key, "process-1")
    second = AgentSocket(server.url, ready.key, "process-2")
    refusal = second.refusal()
    assert "another agent holds this machine's channel" in refusal, refusal
    second.close()
    run_id = started(api, ready.connection_id, as_=admin)["id"]
    assert first.next()["runId"] == run_id  # the first keeps working
    first.close()
    time.sleep(0.2)
    third = agent(server, ready.key, "process-2")  # once it closed, another may take it
    third.close()


def test_the_same_process_reconnecting_replaces_its_channel(
    server: LiveServer, api: Api, admin: Account, ready: Pool
) -> None:
    old = agent(server, ready.key, "process-1")
    new = agent(server, ready.key, "process-1")  # the old socket not (yet) seen closed
    run_id = started(api, ready.connection_id, as_=admin)["id"]
    assert new.next()["runId"] == run_id
    with pytest.raises(Exception):  # noqa: B017  (the old channel ended, or its socket closed)
        old.next(timeout=1)
    old.close()
    new.close()


def test_http_claims_still_work_beside_the_channel(
    server: LiveServer, api: Api, admin: Account, ready: Pool
) -> None:
    run_id = started(api, ready.connection_id, as_=admin)["id"]
    payload = claim(api, ready.machines[1][1])
    assert payload["run"]["id"] == run_id


def test_a_server_restart_with_an_offer_unconfirmed_offers_it_again_once(
    tmp_path: Path, database_url: str
) -> None:
    server = ServerProcess(tmp_path / "server", database_url, SECRET).start()
    try:
        machine = MachineOn.register(server, "RESTART-VM")
        first = AgentSocket(server.url, machine.key, "process-1")
        assert first.next()["kind"] == "READY"
        run_id = machine.start_run("flow", {})
        assert first.next()["runId"] == run_id
        server.kill()  # the offer stays recorded as held; nobody withdrew it
        server.start()
        # The agent process reconnects: the unconfirmed offer is withdrawn and offered again.
        again = AgentSocket(server.url, machine.key, "process-1")
        ready = again.next()
        assert (ready["kind"], ready["runId"]) == ("READY", None)
        assert again.next()["runId"] == run_id
        assert again.confirm(run_id)["errors"] == []
        assert again.confirm(run_id)["errors"][0]["code"] == "CONFLICT"  # confirmed once
        assert machine.run(run_id)["status"] == "RUNNING"
        again.close()
    finally:
        server.stop()
