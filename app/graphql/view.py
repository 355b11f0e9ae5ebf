"""Strawberry's ASGI view with bearer-token authentication and the typed context."""

from __future__ import annotations

from datetime import datetime, timedelta

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.exceptions import ConnectionRejectionError
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL
from strawberry.types.unset import UNSET, UnsetType

from app.db.models import Machine
from app.deadline import ServiceBusy
from app.domain.caller import MachineAgent, Principal
from app.domain.clock import as_utc
from app.domain.identity import authenticate, bearer_token
from app.domain.machines import touch
from app.graphql.context import Context
from app.graphql.schema import build_schema
from app.state import AppState

UNAUTHORIZED = 401
SERVICE_UNAVAILABLE = 503
# An agent's calls within this long of the last recorded one are not written again.
TOUCH_INTERVAL = timedelta(seconds=1)


class GraphQLView(GraphQL[Context, None]):
    """`/graphql`: every operation needs a valid bearer token of an active user or a machine."""

    def __init__(self, state: AppState) -> None:
        settings = state.settings
        super().__init__(
            build_schema(settings, state.metrics),
            graphql_ide="graphiql" if settings.graphiql else None,
            # The spec's one protocol; the legacy graphql-ws one is refused (close 4406).
            subscription_protocols=(GRAPHQL_TRANSPORT_WS_PROTOCOL,),
            connection_init_wait_timeout=timedelta(seconds=settings.ws_init_timeout),
            max_subscriptions_per_connection=settings.ws_max_subscriptions,
            # Cross-site WebSocket hijacking: the same allowlist as CORS (no Origin
            # header, i.e. not a browser, and same-origin pages are always let in).
            allowed_origins=settings.cors_origins,
        )
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        except _Unauthorized as refusal:
            await refusal.response(scope, receive, send)
        except ServiceBusy as busy:
            # The database had no connection for authentication: one clean answer.
            await _busy_response(busy)(scope, receive, send)

    async def get_context(
        self, request: Request | WebSocket, response: Response | WebSocket
    ) -> Context:
        principal = None
        if isinstance(request, Request) and not self._is_ide_page(request):
            principal = await self._authenticate(request.headers.get("authorization"))
            if principal is None:
                raise _Unauthorized()
        return Context(request=request, response=response, app=self.state, principal=principal)

    async def on_ws_connect(self, context: Context) -> UnsetType | dict[str, object] | None:
        """graphql-transport-ws: the token comes in the connection_init payload."""
        params = context.connection_params or {}
        authorization = params.get("authorization") or params.get("Authorization")
        principal = await self._authenticate(
            authorization if isinstance(authorization, str) else None
        )
        if principal is None:
            raise ConnectionRejectionError({"message": _Unauthorized.message})
        context.refresh(principal)
        acknowledged: UnsetType = UNSET  # connection_ack without a payload
        return acknowledged

    def _is_ide_page(self, request: Request) -> bool:
        return (
            self.graphql_ide is not None
            and request.method == "GET"
            and "text/html" in request.headers.get("accept", "")
            and "query" not in request.query_params
        )

    async def _authenticate(self, authorization: str | None) -> Principal | None:
        token = bearer_token(authorization)
        if token is None:
            return None
        state = self.state
        async with state.db.read() as session:
            principal = await authenticate(session, state.settings, token)
        if isinstance(principal, MachineAgent):
            now = state.services.clock.now()
            if _heard_from_lately(principal.machine, now):
                return principal
            async with state.transaction() as session:
                machine = await touch(
                    session, principal.machine.id, now, state.settings.machine_timeout
                )
            principal = MachineAgent(machine) if machine is not None else None
        return principal


def _heard_from_lately(machine: Machine, now: datetime) -> bool:
    """Whether the machine's last call was recorded under TOUCH_INTERVAL ago.

    Every agent call is a heartbeat, but a machine goes offline only after
    MG_MACHINE_TIMEOUT (seconds), so recording at most one call a second per machine
    changes no status and spares a write transaction on most calls of a busy agent.
    """
    seen = machine.last_seen_at
    return seen is not None and timedelta(0) <= now - as_utc(seen) < TOUCH_INTERVAL


def _busy_response(busy: ServiceBusy) -> Response:
    return JSONResponse(
        {"errors": [{"message": busy.message, "extensions": {"code": busy.code}}]},
        status_code=SERVICE_UNAVAILABLE,
        headers={"Retry-After": "1"},
    )


class _Unauthorized(Exception):
    """No valid token: answered with HTTP 401 before any GraphQL runs."""

    message = "a valid bearer token of an active user or machine is required"

    @property
    def response(self) -> Response:
        return JSONResponse(
            {"errors": [{"message": self.message, "extensions": {"code": "UNAUTHENTICATED"}}]},
            status_code=UNAUTHORIZED,
            headers={"WWW-Authenticate": 'Bearer realm="machine-groups"'},
        )
