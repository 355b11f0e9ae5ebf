"""Events across servers through PostgreSQL LISTEN/NOTIFY.

Each server delivers its own events locally at once and sends them, batched over a few
milliseconds, as one small NOTIFY (kinds, topics and ids; never payloads). Every server
LISTENs on a dedicated connection and delivers what the others sent. When that
connection is lost it is re-established and every local listener gets a RESYNC, so a
subscriber sends a fresh snapshot and a waiting agent looks for work again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections.abc import Iterable
from typing import Any

import asyncpg
from sqlalchemy.engine import make_url

from app.domain.events import Event, EventKind
from app.queue.events import LocalEventBus

log = logging.getLogger(__name__)

CHANNEL = "mg_events"
BATCH_SECONDS = 0.003
# PostgreSQL caps a notification at 8000 bytes; stay well below.
MAX_PAYLOAD = 7000
HEALTH_SECONDS = 1.0


def asyncpg_dsn(database_url: str) -> str:
    """The libpq form of a SQLAlchemy URL."""
    return make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)


def encode_batches(origin: str, events: list[Event]) -> list[str]:
    """Events as NOTIFY payloads, each under the size cap."""
    payloads: list[str] = []
    batch: list[list[Any]] = []
    for event in events:
        batch.append([event.kind.value, list(event.topics), event.run_id])
        if len(json.dumps(batch)) > MAX_PAYLOAD - 100:
            batch.pop()
            payloads.append(json.dumps({"o": origin, "e": batch}))
            batch = [[event.kind.value, list(event.topics), event.run_id]]
    if batch:
        payloads.append(json.dumps({"o": origin, "e": batch}))
    return payloads


def decode_batch(payload: str) -> tuple[str, list[Event]]:
    """The origin and events of one NOTIFY payload."""
    data = json.loads(payload)
    events = [Event(EventKind(kind), tuple(topics), run_id) for kind, topics, run_id in data["e"]]
    return data["o"], events


class PostgresEventBus(LocalEventBus):
    """A LocalEventBus whose events also reach every other server on the database."""

    def __init__(self, database_url: str) -> None:
        super().__init__()
        self._dsn = asyncpg_dsn(database_url)
        self.origin = uuid.uuid4().hex
        self._outbox: list[Event] = []
        self._wake = asyncio.Event()
        self._listener: asyncpg.Connection | None = None
        self._sender: asyncpg.Connection | None = None
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        """Connect, LISTEN, and start sending."""
        await self._connect_listener()
        self._tasks = [
            asyncio.create_task(self._send_forever()),
            asyncio.create_task(self._keep_listening()),
        ]

    async def stop(self) -> None:
        """Stop sending and close both connections."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for connection in (self._listener, self._sender):
            if connection is not None and not connection.is_closed():
                await connection.close()

    async def publish(self, events: Iterable[Event]) -> None:
        """Deliver locally now; queue for the other servers."""
        batch = list(events)
        if not batch:
            return
        self.deliver(batch)
        self._outbox.extend(batch)
        self._wake.set()

    async def _connect_listener(self) -> None:
        self._listener = await asyncpg.connect(self._dsn)
        await self._listener.add_listener(CHANNEL, self._on_notification)

    def _on_notification(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        try:
            origin, events = decode_batch(payload)
        except (ValueError, KeyError, TypeError):
            log.warning("ignored a malformed event notification")
            return
        if origin != self.origin:
            self.deliver(events)

    async def _send_forever(self) -> None:
        while True:
            await self._wake.wait()
            await asyncio.sleep(BATCH_SECONDS)  # gather what else this moment publishes
            self._wake.clear()
            events, self._outbox = self._outbox, []
            try:
                if self._sender is None or self._sender.is_closed():
                    self._sender = await asyncpg.connect(self._dsn)
                for payload in encode_batches(self.origin, events):
                    await self._sender.execute("SELECT pg_notify($1, $2)", CHANNEL, payload)
            except (OSError, asyncpg.PostgresError) as error:
                # The other servers miss these; their listeners resync when they notice.
                log.error("could not send %d event(s) to other servers: %s", len(events), error)
                self._sender = None

    async def _keep_listening(self) -> None:
        delay = 0.1
        while True:
            await asyncio.sleep(HEALTH_SECONDS)
            if self._listener is not None and not self._listener.is_closed():
                delay = 0.1
                continue
            try:
                await self._connect_listener()
            except (OSError, asyncpg.PostgresError) as error:
                log.warning("LISTEN connection lost, retrying in %.1f s: %s", delay, error)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
                continue
            log.info("LISTEN connection re-established; listeners resync")
            self.resync()
