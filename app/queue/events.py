"""The event bus: committed events delivered to listeners of their topics.

Subscribers and waiting agents listen on topics. The bus here is in-process; it is the
one seam a multi-server bus (PostgreSQL LISTEN/NOTIFY, app/queue/pg_events.py) replaces.
The vocabulary (kinds, topics, `emit`) is the domain's: app/domain/events.py.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from typing import Protocol

from app.domain.events import Event, EventKind


class EventBus(Protocol):
    async def publish(self, events: Iterable[Event]) -> None:
        """Deliver committed events to every listener of their topics."""
        ...

    def listen(
        self, *topics: str, quiet: Mapping[str, frozenset[EventKind]] | None = None
    ) -> AbstractAsyncContextManager[Listening]:
        """Listen on topics until the context exits (`quiet`: kinds not wanted from a topic)."""
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
    # Kinds of event this listener does not want from a topic (it may get them from another).
    quiet: Mapping[str, frozenset[EventKind]] = field(default_factory=dict)

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
                    if event.kind in listener.quiet.get(topic, ()):
                        continue
                    if listener not in delivered:
                        delivered.add(listener)
                        listener.inbox.put_nowait(event)

    @asynccontextmanager
    async def listen(
        self, *topics: str, quiet: Mapping[str, frozenset[EventKind]] | None = None
    ) -> AsyncIterator[Listening]:
        """Listen on topics until the context exits (`quiet`: kinds not wanted from a topic)."""
        listening = Listening(topics, quiet=quiet or {})
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
