"""Change events, the vocabulary: what happened, on which topics.

Rules record events on their session (`emit`); whoever commits the session publishes
them on the bus (app/queue/events.py), once the change has committed. Events are small
(ids, not payloads), so they can cross servers as notifications.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

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
