"""A group or a machine by id, held for the rest of the transaction."""

from __future__ import annotations

from typing import Any, TypeVar

from sqlalchemy import Select, bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from app.db.models import Machine, MachineGroup

R = TypeVar("R", bound=MachineGroup | Machine)

# Built once: starting a run, the busiest write, takes one of these locks.
_LOCKED: dict[type[Any], Select[Any]] = {
    model: select(model).where(col(model.id) == bindparam("id")).with_for_update()
    for model in (MachineGroup, Machine)
}


async def locked(session: AsyncSession, model: type[R], record_id: str) -> R | None:
    """The row with this id, or None; FOR UPDATE on PostgreSQL (on SQLite the write
    transaction already keeps every other writer out)."""
    row: R | None = await session.scalar(_LOCKED[model], {"id": record_id})
    return row
