"""The agent's folder, lock and flow record, and process groups told apart and stopped:
on real files and real processes, without a server."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path

import pytest

from app.agent.client import AgentError
from app.agent.groups import boot_id, group_alive, is_the_same_group, start_time, stop_group
from app.agent.ledger import AgentLock, AnotherAgent, FlowRecord, Ledger, key_folder
from tests.processes import process_running

KEY = "mgk_0123456789-the-machine-key"
# Ignores SIGTERM (as does the `sleep` it leaves in its group), says the sleep's pid.
STUBBORN = """
import signal, subprocess, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
child = subprocess.Popen(["sleep", "60"])
print(child.pid, flush=True)
time.sleep(60)
"""
# Leaves a `sleep` in its group and exits at once.
LEAVES_A_CHILD = 'import subprocess; print(subprocess.Popen(["sleep", "60"]).pid, flush=True)'


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


class Groups:
    """Programs started in process groups of their own; every group is killed at the end."""

    def __init__(self) -> None:
        self.started: list[subprocess.Popen[str]] = []

    def start(self, program: str) -> tuple[subprocess.Popen[str], int]:
        """A Python program leading a new group, and the pid of the child it printed."""
        process = subprocess.Popen(
            [sys.executable, "-c", program],
            stdout=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        self.started.append(process)
        assert process.stdout is not None
        return process, int(process.stdout.readline())

    def kill_all(self) -> None:
        """SIGKILL every group started, and reap the leaders."""
        for process in self.started:
            with suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


@pytest.fixture
def groups() -> Iterator[Groups]:
    """Start programs in groups of their own: `groups.start(program)`."""
    started = Groups()
    yield started
    started.kill_all()


def test_the_keys_folder_is_private_and_named_by_a_hash_of_the_key(tmp_path: Path) -> None:
    folder = key_folder(tmp_path / "state", KEY)
    assert folder.parent == tmp_path / "state"
    assert folder.name.startswith("machine-") and KEY not in folder.name
    assert _mode(folder) == 0o700
    assert key_folder(tmp_path / "state", KEY) == folder
    assert key_folder(tmp_path / "state", KEY + "x") != folder


def test_one_agent_holds_the_keys_lock_at_a_time(tmp_path: Path) -> None:
    folder = key_folder(tmp_path, KEY)
    held = AgentLock(folder)
    assert _mode(folder / "agent.lock") == 0o600
    holder = re.escape(f"(pid {os.getpid()}, lock {folder / 'agent.lock'})")
    with pytest.raises(AnotherAgent, match=holder):
        AgentLock(folder)
    held.release()
    AgentLock(folder).release()


def test_a_flow_is_recorded_privately_with_its_group_and_when_its_leader_started(
    tmp_path: Path, groups: Groups
) -> None:
    folder = key_folder(tmp_path, KEY)
    ledger = Ledger(folder)
    assert ledger.leftover() is None
    leader, _child = groups.start(STUBBORN)

    ledger.record("run-1", leader.pid)

    record = ledger.leftover()
    assert record == FlowRecord("run-1", leader.pid, start_time(leader.pid), boot_id())
    assert record.leader_start is not None and record.boot is not None
    assert [path.name for path in folder.iterdir()] == ["flow.json"]  # no temporary left
    assert _mode(folder / "flow.json") == 0o600
    assert KEY not in (folder / "flow.json").read_text()
    ledger.clear()
    assert ledger.leftover() is None


def test_a_record_that_cannot_be_read_stops_the_agent(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path)
    ledger.path.write_text(json.dumps({"run_id": "run-1"}))
    with pytest.raises(AgentError, match="is not a readable flow record"):
        ledger.leftover()


def test_a_group_is_the_flows_only_while_its_leader_is_the_one_recorded(
    groups: Groups,
) -> None:
    leader, _child = groups.start(STUBBORN)
    started = start_time(leader.pid)
    assert is_the_same_group(leader.pid, started, boot_id())
    # The id now names a process that started at another time: a stranger's, left alone.
    assert not is_the_same_group(leader.pid, "1", boot_id())
    assert not is_the_same_group(leader.pid, started, "another boot")


def test_a_group_whose_leader_exited_is_still_the_flows_children(groups: Groups) -> None:
    leader, child = groups.start(LEAVES_A_CHILD)
    started = start_time(leader.pid)
    leader.wait(timeout=10)
    assert process_running(child) and group_alive(leader.pid)
    assert is_the_same_group(leader.pid, started, boot_id())

    assert asyncio.run(stop_group(leader.pid, grace_seconds=5))
    assert not process_running(child)
    assert not group_alive(leader.pid)
    assert not is_the_same_group(leader.pid, started, boot_id())


def test_a_group_that_ignores_sigterm_is_killed_after_the_grace(groups: Groups) -> None:
    leader, child = groups.start(STUBBORN)
    began = time.monotonic()

    assert asyncio.run(stop_group(leader.pid, grace_seconds=0.5))

    assert time.monotonic() - began >= 0.5
    assert leader.wait(timeout=10) == -signal.SIGKILL
    assert not process_running(child)
