"""What waiting, events, the sweeper and the agent channel work with: the database, the
event bus and the clock (not the whole service's state)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncSession

from app.db.engine import Database
from app.db.models import new_id
from app.domain.clock import Clock
from app.domain.events import take_pending
from app.metrics import Metrics
from app.queue.events import LocalEventBus
from app.settings import Settings


@dataclass
class Hub:
    """The database, the bus carrying its committed changes, time, and the settings."""

    db: Database
    bus: LocalEventBus
    clock: Clock
    settings: Settings
    metrics: Metrics = field(default_factory=Metrics)
    # This server's life in the database (app/queue/uptime.py): a new one at each start.
    server_id: str = field(default_factory=new_id)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """A write transaction whose events are published once it commits."""
        async with self.db.write() as session:
            yield session
        await self.bus.publish(take_pending(session))
