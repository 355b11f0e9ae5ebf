"""Derived state: a machine's status from its heartbeats and its group."""

from __future__ import annotations

from datetime import datetime, timedelta

from app.db.models import Machine
from app.domain.clock import as_utc
from app.domain.enums import MachineStatus


def is_online(machine: Machine, now: datetime, timeout_seconds: int) -> bool:
    """Whether the machine's agent called within the timeout (its channel, while open,
    keeps it so), and has not left since: a closed channel makes it offline at once."""
    return seen_online(machine.last_seen_at, machine.left_at, now, timeout_seconds)


def seen_online(
    last_seen_at: datetime | None, left_at: datetime | None, now: datetime, timeout_seconds: int
) -> bool:
    """`is_online` from the two columns that decide it."""
    if last_seen_at is None:
        return False
    seen = as_utc(last_seen_at)
    if left_at is not None and as_utc(left_at) >= seen:
        return False
    return now - seen <= timedelta(seconds=timeout_seconds)


def machine_status(
    machine: Machine, group_in_maintenance: bool, now: datetime, timeout_seconds: int
) -> MachineStatus:
    """MAINTENANCE while its group is in maintenance, else ONLINE or OFFLINE."""
    if group_in_maintenance:
        return MachineStatus.MAINTENANCE
    return (
        MachineStatus.ONLINE if is_online(machine, now, timeout_seconds) else MachineStatus.OFFLINE
    )
