"""One computation of a group's queue status per change, shared by all its subscribers.

Every subscriber of a group receives the same event object; the first to ask computes
the counts for it and the others await that result, so a change costs a few statements
whatever the number of subscribers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime

from app.db.models import Run
from app.domain.events import Event
from app.domain.queue import QueueCounts


@dataclass(frozen=True)
class Snapshot:
    """A group's counts at one moment, and the run whose change caused them."""

    counts: QueueCounts
    run: Run | None
    at: datetime


class SharedSnapshots:
    """The latest event's snapshot per group, computed once."""

    def __init__(self) -> None:
        self._latest: dict[str, tuple[Event, asyncio.Future[Snapshot | None]]] = {}

    async def for_event(
        self, group_id: str, event: Event, compute: Callable[[], Awaitable[Snapshot | None]]
    ) -> Snapshot | None:
        """The snapshot for `event` (the very object the bus delivered), computed once."""
        latest = self._latest.get(group_id)
        if latest is not None and latest[0] is event:
            if latest[1].done():  # most subscribers of a change: no shield, no await
                return latest[1].result()
            return await asyncio.shield(latest[1])
        future: asyncio.Future[Snapshot | None] = asyncio.get_running_loop().create_future()
        self._latest[group_id] = (event, future)
        try:
            snapshot = await compute()
        except BaseException as error:
            self._latest.pop(group_id, None)
            future.set_exception(error)
            future.exception()  # retrieved: the waiters, if any, get it through the shield
            raise
        future.set_result(snapshot)
        return snapshot
