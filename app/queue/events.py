"""Change events: what happened, on which topics, delivered after the change commits.

Rules record events on their session (`emit`); whoever commits the session publishes
them (`publish_pending`). Subscribers and waiting agents listen on topics. The bus here
is in-process; it is the one seam a multi-server bus (PostgreSQL LISTEN/NOTIFY) replaces.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import AsyncIterator, Iterable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from enum import Enum
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncSession

_PENDING = "mg_pending_events"


class EventKind(Enum):
    RUN_QUEUED = "RUN_QUEUED"
    RUN_CHANGED = "RUN_CHANGED"
    MACHINES_CHANGED = "MACHINES_CHANGED"
    GROUP_CHANGED = "GROUP_CHANGED"
    GROUP_DELETED = "GROUP_DELETED"
    ACCESS_CHANGED = "ACCESS_CHANGED"
    # Events may have been missed (a lost LISTEN connection): listeners start afresh.
    RESYNC = "RESYNC"


@dataclass(frozen=True)
class Event:
    """One change: small (ids, not payloads), so it can cross servers as a notification."""

    kind: EventKind
    topics: tuple[str, ...]
    run_id: str | None = None


def group_topic(group_id: str) -> str:
    """Everything about one group's queue, machines and access."""
    return f"group:{group_id}"


def machine_topic(machine_id: str) -> str:
    """Work queued for one machine directly, and its own changes."""
    return f"machine:{machine_id}"


def run_topic(run_id: str) -> str:
    """Status changes of one run."""
    return f"run:{run_id}"


def user_topic(user_id: str) -> str:
    """Changes to what one user may see (deactivation, roles)."""
    return f"user:{user_id}"


def emit(session: AsyncSession, event: Event) -> None:
    """Record an event to publish once the session's transaction commits."""
    session.info.setdefault(_PENDING, []).append(event)


def take_pending(session: AsyncSession) -> list[Event]:
    """The events recorded on a session, removing them."""
    events: list[Event] = session.info.pop(_PENDING, [])
    return events


class EventBus(Protocol):
    async def publish(self, events: Iterable[Event]) -> None:
        """Deliver committed events to every listener of their topics."""
        ...

    def listen(self, *topics: str) -> AbstractAsyncContextManager[Listening]:
        """Listen on topics until the context exits."""
        ...

    async def start(self) -> None:
        """Connect whatever carries events between servers."""
        ...

    async def stop(self) -> None:
        """Disconnect it."""
        ...


@dataclass(eq=False)
class Listening:
    """A listener's inbox; an async context manager and an async iterator of events."""

    topics: tuple[str, ...]
    inbox: asyncio.Queue[Event] = field(default_factory=asyncio.Queue)

    async def next(self, wait_seconds: float | None = None) -> Event | None:
        """The next event, or None after `wait_seconds` without one."""
        try:
            return await asyncio.wait_for(self.inbox.get(), wait_seconds)
        except TimeoutError:
            return None

    def drain(self) -> list[Event]:
        """Every event already waiting, without blocking."""
        events = []
        while not self.inbox.empty():
            events.append(self.inbox.get_nowait())
        return events


class LocalEventBus:
    """Delivers events to listeners in this process."""

    def __init__(self) -> None:
        self._listeners: defaultdict[str, set[Listening]] = defaultdict(set)

    async def publish(self, events: Iterable[Event]) -> None:
        """Deliver each event once to every listener of any of its topics."""
        self.deliver(events)

    def deliver(self, events: Iterable[Event]) -> None:
        """Hand events to this process's listeners (without blocking)."""
        for event in events:
            delivered: set[Listening] = set()
            for topic in event.topics:
                for listener in tuple(self._listeners.get(topic, ())):
                    if listener not in delivered:
                        delivered.add(listener)
                        listener.inbox.put_nowait(event)

    @asynccontextmanager
    async def listen(self, *topics: str) -> AsyncIterator[Listening]:
        """Listen on topics until the context exits."""
        listening = Listening(topics)
        for topic in topics:
            self._listeners[topic].add(listening)
        try:
            yield listening
        finally:
            for topic in topics:
                self._listeners[topic].discard(listening)
                if not self._listeners[topic]:
                    del self._listeners[topic]

    def resync(self) -> None:
        """Tell every listener that events may have been missed."""
        listeners = {listener for group in self._listeners.values() for listener in group}
        for listener in listeners:
            listener.inbox.put_nowait(Event(EventKind.RESYNC, listener.topics))

    async def start(self) -> None:
        """Nothing to connect in-process."""

    async def stop(self) -> None:
        """Nothing to disconnect in-process."""

    def listener_count(self) -> int:
        """How many listeners are registered (for tests and metrics)."""
        return len({listener for group in self._listeners.values() for listener in group})
