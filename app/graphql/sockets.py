"""WebSockets that keep no identity of their own.

A socket proves its token once, at `connection_init`, but its principal may change while
it stays open: a user deactivated, a role removed, a token expiring. So every operation
on it runs for the principal as they are when it starts (`LiveSocketHandler`), live
streams check again on access changes (app/graphql/subscriptions.py), and `SocketWatch`
closes, within a second, the sockets whose user is deactivated, whose token expired or
whose machine was deleted, and tells the streams of a user whose roles changed.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Protocol

from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import (
    BaseGraphQLTransportWSHandler,
)
from strawberry.subscriptions.protocols.graphql_transport_ws.types import ConnectionInitMessage

from app.domain.caller import MachineAgent, Principal, Viewer
from app.domain.events import Event, EventKind, user_topic
from app.domain.identity import (
    Refusal,
    bearer_token,
    existing_machines,
    standings,
    token_expiry,
)
from app.graphql.authn import principal_for
from app.graphql.context import Context
from app.queue.events import LocalEventBus
from app.state import AppState

log = logging.getLogger(__name__)

FORBIDDEN = 4403
WATCH_SECONDS = 0.5  # well within the second the spec allows

# The context of the operation running in the current task: each operation on a socket
# runs in a task of its own (asyncio copies context variables into a new task), so this
# holds one operation's context without touching the socket's or its other operations'.
_OPERATION: contextvars.ContextVar[Context | None] = contextvars.ContextVar(
    "mg_operation_context", default=None
)


class LiveSocketHandler(BaseGraphQLTransportWSHandler[Context, None]):
    """graphql-transport-ws where each operation proves the socket's token again."""

    @property
    def context(self) -> Context:
        """Inside an operation: its own context; elsewhere: the socket's."""
        return _OPERATION.get() or self._socket_context

    @context.setter
    def context(self, value: Context) -> None:
        self._socket_context = value

    @property
    def watch(self) -> SocketWatch:
        """The watch of the view that opened this socket."""
        watch: SocketWatch = getattr(self.view, "sockets")  # noqa: B009  (typed loosely upstream)
        return watch

    async def handle_connection_init(self, message: ConnectionInitMessage) -> None:
        """Accept or refuse the socket; an accepted one is watched until it closes."""
        await super().handle_connection_init(message)
        if self.connection_acknowledged:
            context = self._socket_context
            self.watch.add(self, context.principal, context.authorization)

    async def shutdown(self) -> None:
        """Stop watching, then end the socket's operations."""
        self.watch.discard(self)
        await super().shutdown()

    async def run_operation(self, operation: Any) -> None:
        """Run one operation for the principal as they are now, or close the socket."""
        context = await self._socket_context.for_operation()
        if isinstance(context, Refusal):
            await self.close(context.close_reason)
            return
        _OPERATION.set(context)
        await super().run_operation(operation)

    async def close(self, reason: str) -> None:
        """Close the socket as forbidden, saying why (nothing if it is closed already)."""
        with contextlib.suppress(RuntimeError):  # the peer closed it meanwhile
            await self.websocket.close(code=FORBIDDEN, reason=reason)


class Closable(Protocol):
    """What the watch closes: a socket, or a stream answered over HTTP."""

    async def close(self, reason: str) -> None:
        """End it, saying why."""


@dataclass(eq=False)
class _HttpStream:
    """A subscription answered over HTTP (multipart). It has no frame to close with a
    reason: closing it wakes its user's streams, which decide again and end, saying why
    (the token expired, the user was deactivated)."""

    bus: LocalEventBus
    user_id: str

    async def close(self, reason: str) -> None:
        self.bus.deliver([Event(EventKind.ACCESS_CHANGED, (user_topic(self.user_id),))])


@dataclass
class _Watched:
    """What the watch knows of one open socket's principal."""

    user_id: str | None
    machine_id: str | None
    roles: object
    expires_at: float | None


class SocketWatch:
    """The open sockets (and HTTP streams) of one server, checked together: one
    statement per check for all of them, whatever their number."""

    def __init__(self, state: AppState, interval: float = WATCH_SECONDS) -> None:
        self.state = state
        self.interval = interval
        self._sockets: dict[Closable, _Watched] = {}

    def add(self, socket: Closable, principal: Principal | None, authorization: str | None) -> None:
        """Watch an accepted socket, for the principal its token stands for."""
        token = bearer_token(authorization) or ""
        if isinstance(principal, Viewer):
            expires = token_expiry(self.state.settings, token)
            self._sockets[socket] = _Watched(principal.id, None, principal.roles, expires)
        elif isinstance(principal, MachineAgent):
            self._sockets[socket] = _Watched(None, principal.machine.id, None, None)

    def discard(self, socket: Closable) -> None:
        """Stop watching a socket that closed."""
        self._sockets.pop(socket, None)

    @contextlib.asynccontextmanager
    async def watching_stream(self, authorization: str | None) -> AsyncIterator[None]:
        """Watch a subscription answered over HTTP while it streams, as a socket is."""
        principal = await principal_for(self.state, authorization)
        if not isinstance(principal, Viewer):  # only users subscribe
            yield
            return
        stream = _HttpStream(self.state.bus, principal.id)
        self.add(stream, principal, authorization)
        try:
            yield
        finally:
            self.discard(stream)

    def __len__(self) -> int:
        return len(self._sockets)

    async def watch_forever(self) -> None:
        """Check the open sockets every `interval` seconds (a lifespan task)."""
        while True:
            await asyncio.sleep(self.interval)
            if self._sockets:
                try:
                    await self.check()
                except Exception:  # the next check tries again; the watch never stops
                    log.exception("checking the open sockets failed")

    async def check(self) -> None:
        """Close the sockets whose principal is gone; tell streams of changed roles."""
        watched = dict(self._sockets)
        user_ids = {w.user_id for w in watched.values() if w.user_id}
        machine_ids = {w.machine_id for w in watched.values() if w.machine_id}
        async with self.state.db.read() as session:
            users = await standings(session, user_ids) if user_ids else {}
            machines = await existing_machines(session, machine_ids)
        now = time.time()
        changed: set[str] = set()
        for socket, seen in watched.items():
            refusal = None
            if seen.machine_id is not None:
                refusal = None if seen.machine_id in machines else Refusal.UNKNOWN_MACHINE
            elif seen.user_id is not None:
                standing = users.get(seen.user_id)
                if standing is None:
                    refusal = Refusal.UNKNOWN_USER
                elif standing.deactivated:
                    refusal = Refusal.DEACTIVATED
                elif seen.expires_at is not None and seen.expires_at <= now:
                    refusal = Refusal.EXPIRED
                elif standing.roles != seen.roles:
                    seen.roles = standing.roles
                    changed.add(seen.user_id)
            if refusal is not None:
                self.discard(socket)
                await socket.close(refusal.close_reason)
        if changed:
            # Roles changed where no event said so (the command line, another server's
            # missed notification): the user's live streams decide again.
            self.state.bus.deliver(
                [Event(EventKind.ACCESS_CHANGED, tuple(user_topic(u) for u in changed))]
            )
