"""Strawberry's ASGI view with bearer-token authentication and the typed context."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from datetime import timedelta
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket
from strawberry.asgi import ASGIWebSocketAdapter, GraphQL
from strawberry.exceptions import ConnectionRejectionError
from strawberry.http.exceptions import NonJsonMessageReceived
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL
from strawberry.types.unset import UNSET, UnsetType

from app.deadline import ServiceBusy
from app.graphql import request_json
from app.graphql.authn import principal_for
from app.graphql.context import Context
from app.graphql.schema import build_schema
from app.graphql.sockets import LiveSocketHandler, SocketWatch
from app.http_errors import error_response
from app.state import AppState
from app.web import graphiql_page

BAD_REQUEST = 400
UNAUTHORIZED = 401
SERVICE_UNAVAILABLE = 503


class _WebSocketAdapter(ASGIWebSocketAdapter):
    """Strawberry's socket adapter, closing the socket (4400) on a message that is not a
    protocol object: an `id` that is not text, a `payload` that is not an object.

    Strawberry's handler indexes each message as such an object: a JSON array, a string
    or a payload of another shape raised TypeError out of the socket's task, an
    unexpected error that cut the socket without a close frame.
    """

    async def iter_json(
        self, *, ignore_parsing_errors: bool = False
    ) -> AsyncGenerator[object, None]:
        """The socket's messages, each a protocol-shaped object."""
        async for message in super().iter_json(ignore_parsing_errors=ignore_parsing_errors):
            if not _protocol_shaped(message):
                raise NonJsonMessageReceived()
            yield message


def _protocol_shaped(message: object) -> bool:
    if not isinstance(message, dict):
        return False
    payload, message_id = message.get("payload"), message.get("id")
    return isinstance(payload, dict | None) and isinstance(message_id, str | None)


class GraphQLView(GraphQL[Context, None]):
    """`/graphql`: every operation needs a valid bearer token of an active user or a machine."""

    graphql_transport_ws_handler_class = LiveSocketHandler
    websocket_adapter_class = _WebSocketAdapter

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
        self.sockets = SocketWatch(state)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        except (_Unauthorized, _BadRequest) as refusal:
            await refusal.response(scope, receive, send)
        except ServiceBusy as busy:
            # The database had no connection for authentication: one clean answer.
            await _busy_response(busy)(scope, receive, send)

    def decode_json(self, data: str | bytes) -> object:
        """Request bodies, GET variables and WebSocket messages, nested at most
        MAX_JSON_DEPTH deep (a WebSocket message nested deeper closes the socket, 4400)."""
        return request_json.decode_json(data)

    def parse_json(self, data: str | bytes) -> Any:
        """An HTTP request's JSON; what cannot be decoded answers HTTP 400 (Strawberry's
        own answer is plain text), in the shape of a GraphQL error."""
        try:
            return request_json.decode_json(data)
        except request_json.UndecodableJSON as error:
            raise _BadRequest(error.message) from None

    async def get_context(
        self, request: Request | WebSocket, response: Response | WebSocket
    ) -> Context:
        principal, authorization = None, None
        if isinstance(request, Request) and not self._is_ide_page(request):
            authorization = request.headers.get("authorization")
            principal = await principal_for(self.state, authorization)
            if principal is None:
                raise _Unauthorized()
        return Context(
            request=request,
            response=response,
            app=self.state,
            principal=principal,
            authorization=authorization,
        )

    async def on_ws_connect(self, context: Context) -> UnsetType | dict[str, object] | None:
        """graphql-transport-ws: the token comes in the connection_init payload; it is
        kept, as each operation on the socket checks it again."""
        params = context.connection_params or {}
        authorization = params.get("authorization") or params.get("Authorization")
        context.authorization = authorization if isinstance(authorization, str) else None
        principal = await principal_for(self.state, context.authorization)
        if principal is None:
            raise ConnectionRejectionError({"message": _Unauthorized.message})
        context.refresh(principal)
        acknowledged: UnsetType = UNSET  # connection_ack without a payload
        return acknowledged

    async def render_graphql_ide(self, request: Request) -> Response:
        """GraphiQL from the vendored files under /console (app/web.py), not from a CDN."""
        return graphiql_page(request)

    def _is_ide_page(self, request: Request) -> bool:
        return (
            self.graphql_ide is not None
            and request.method == "GET"
            and "text/html" in request.headers.get("accept", "")
            and "query" not in request.query_params
        )


def _busy_response(busy: ServiceBusy) -> Response:
    return error_response(
        SERVICE_UNAVAILABLE, busy.message, busy.code, headers={"Retry-After": "1"}
    )


class _Unauthorized(Exception):
    """No valid token: answered with HTTP 401 before any GraphQL runs."""

    message = "a valid bearer token of an active user or machine is required"

    @property
    def response(self) -> Response:
        return error_response(
            UNAUTHORIZED,
            self.message,
            "UNAUTHENTICATED",
            headers={"WWW-Authenticate": 'Bearer realm="machine-groups"'},
        )


class _BadRequest(Exception):
    """JSON that cannot be decoded: answered with HTTP 400 before any GraphQL runs."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    @property
    def response(self) -> Response:
        return error_response(BAD_REQUEST, self.message, "BAD_REQUEST")
