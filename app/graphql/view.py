"""Strawberry's ASGI view with bearer-token authentication and the typed context."""

from __future__ import annotations

from datetime import timedelta

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.exceptions import ConnectionRejectionError
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL
from strawberry.types.unset import UNSET, UnsetType

from app.graphql.authn import principal_for
from app.graphql.context import Context
from app.graphql.schema import build_schema
from app.graphql.sockets import LiveSocketHandler, SocketWatch
from app.state import AppState

UNAUTHORIZED = 401


class GraphQLView(GraphQL[Context, None]):
    """`/graphql`: every operation needs a valid bearer token of an active user or a machine."""

    graphql_transport_ws_handler_class = LiveSocketHandler

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
        except _Unauthorized as refusal:
            await refusal.response(scope, receive, send)

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

    def _is_ide_page(self, request: Request) -> bool:
        return (
            self.graphql_ide is not None
            and request.method == "GET"
            and "text/html" in request.headers.get("accept", "")
            and "query" not in request.query_params
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
