"""Connections that break when what they aim at goes away or joins a group."""

from __future__ import annotations

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from app.db.models import Connection
from app.domain.enums import ConnectionStatus


async def break_connections(
    session: AsyncSession,
    *,
    reason: str,
    machine_id: str | None = None,
    group_id: str | None = None,
    forget_target: bool = True,
) -> list[Connection]:
    """Mark the active connections aiming at a machine or group broken; returns them."""
    target = (
        col(Connection.machine_id) == machine_id
        if machine_id is not None
        else col(Connection.group_id) == group_id
    )
    values: dict[str, object] = {
        "status": ConnectionStatus.BROKEN.value,
        "broken_reason": reason,
    }
    if forget_target:
        values.update(machine_id=None, group_id=None)
    broken = await session.scalars(
        update(Connection).where(target).values(**values).returning(Connection)
    )
    return list(broken)
