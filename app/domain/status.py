"""Derived state: a machine's status from its heartbeats and its group."""

from __future__ import annotations

from datetime import datetime, timedelta

from app.db.models import Machine
from app.domain.clock import as_utc
from app.domain.enums import MachineStatus


def is_online(machine: Machine, now: datetime, timeout_seconds: int) -> bool:
    """Whether the machine's agent called within the timeout."""
    if machine.last_seen_at is None:
        return False
    return now - as_utc(machine.last_seen_at) <= timedelta(seconds=timeout_seconds)


def machine_status(
    machine: Machine, group_in_maintenance: bool, now: datetime, timeout_seconds: int
) -> MachineStatus:
    """MAINTENANCE while its group is in maintenance, else ONLINE or OFFLINE."""
    if group_in_maintenance:
        return MachineStatus.MAINTENANCE
    return (
        MachineStatus.ONLINE if is_online(machine, now, timeout_seconds) else MachineStatus.OFFLINE
    )
