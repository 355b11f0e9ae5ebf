"""Process groups on this host: telling a flow's group from a stranger's, and stopping one.

A flow runs in a process group of its own, led by the flow program (its id is the
program's pid). Ids are reused, so the agent records the leader's start time along with
the id and compares it before it signals anything. POSIX never reuses a group's id while
the group has members, so a group whose leader is gone is still the flow's children.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from pathlib import Path

PROC = Path("/proc")
POLL_SECONDS = 0.05
# After SIGKILL a process is gone at once unless stuck in the kernel: wait this long.
KILL_WAIT_SECONDS = 5.0
# In /proc/<pid>/stat, after "pid (comm)": state, ppid, pgrp, ..., starttime (field 22).
_STATE, _PGRP, _START_TIME = 0, 2, 19


def _stat(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name; None if there is none."""
    try:
        text = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # The command name may hold spaces and parentheses: it ends at the last ")".
    return text[text.rfind(")") + 2 :].split()


def boot_id() -> str | None:
    """This boot of the host (Linux); a reboot ends every process started before it."""
    try:
        return (PROC / "sys" / "kernel" / "random" / "boot_id").read_text().strip()
    except OSError:
        return None


def start_time(pid: int) -> str | None:
    """When process `pid` started, in clock ticks since boot (Linux); None if not known."""
    fields = _stat(pid)
    return fields[_START_TIME] if fields else None


def group_alive(group: int) -> bool:
    """Whether process group `group` has a member this user may signal that is not a zombie."""
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return False  # another user's: nothing of it is a flow this agent started
    if not PROC.is_dir():
        return True
    # Orphans of a killed agent may stay zombies (not every init reaps them): those are dead.
    for entry in PROC.iterdir():
        if entry.name.isdigit():
            fields = _stat(int(entry.name))
            if fields and fields[_PGRP] == str(group) and fields[_STATE] not in ("Z", "X"):
                return True
    return False


def is_the_same_group(group: int, leader_start: str | None, boot: str | None) -> bool:
    """Whether `group` is still the one whose leader started at `leader_start` in `boot`."""
    if boot != boot_id() or not group_alive(group):
        return False
    if not PROC.is_dir():
        return True  # nothing to compare with (no /proc): the group id is all there is
    current = start_time(group)
    # No leader: its id cannot have been reused while the group lives, so these are its own.
    return current is None or current == leader_start


async def stop_group(group: int, grace_seconds: float) -> bool:
    """SIGTERM to the group, SIGKILL to what is left after `grace_seconds`; whether it ended."""
    for signum, wait in ((signal.SIGTERM, grace_seconds), (signal.SIGKILL, KILL_WAIT_SECONDS)):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(group, signum)
        deadline = asyncio.get_running_loop().time() + wait
        while group_alive(group):
            if asyncio.get_running_loop().time() >= deadline:
                break
            await asyncio.sleep(POLL_SECONDS)
        else:
            return True
    return False
