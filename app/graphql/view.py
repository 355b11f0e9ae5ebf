"""Strawberry's ASGI view with bearer-token authentication and the typed context."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping
from datetime import timedelta
from typing import Any

from cross_web import AsyncHTTPRequestAdapter, HTTPException
from graphql import GraphQLError, parse
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketState
from strawberry.asgi import ASGIWebSocketAdapter, GraphQL
from strawberry.exceptions import ConnectionRejectionError
from strawberry.http import GraphQLRequestData
from strawberry.http.exceptions import NonJsonMessageReceived
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL, MULTIPART_SUBSCRIPTION_PROTOCOL
from strawberry.types.graphql import OperationType
from strawberry.types.unset import UNSET, UnsetType
from strawberry.utils.operation import get_operation_type

from app.deadline import ServiceBusy
from app.domain.identity import Refusal
from app.graphql import request_json
from app.graphql.authn import principal_for
from app.graphql.context import Context
from app.graphql.schema import build_schema
from app.graphql.sockets import FORBIDDEN, LiveSocketHandler, SocketWatch
from app.http_errors import (
    BAD_REQUEST,
    NOT_ACCEPTABLE,
    STREAMS,
    UNAUTHORIZED,
    error_response,
    strawberry_refusal,
)
from app.state import AppState
from app.web import graphiql_page

REALM = "machine-groups"
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

    async def close(self, code: int, reason: str) -> None:
        """Close the socket, unless it is closed already (a refusal closes it first, with
        its own reason, then Strawberry closes it again with a generic one)."""
        if self.ws.application_state is not WebSocketState.DISCONNECTED:
            await super().close(code, reason)


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
            # The spec's one socket protocol (the legacy graphql-ws one is refused, close
            # 4406), and subscriptions over HTTP as multipart streams (what GraphiQL sends).
            subscription_protocols=(
                GRAPHQL_TRANSPORT_WS_PROTOCOL,
                MULTIPART_SUBSCRIPTION_PROTOCOL,
            ),
            connection_init_wait_timeout=timedelta(seconds=settings.ws_init_timeout),
            max_subscriptions_per_connection=settings.ws_max_subscriptions,
            # Cross-site WebSocket hijacking: the same allowlist as CORS (no Origin
            # header, i.e. not a browser, and same-origin pages are always let in).
            allowed_origins=settings.cors_origins,
        )
        self.state = state
        self.sockets = SocketWatch(state)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return
        try:
            response = await self.run(Request(scope, receive))
        except (_Unauthorized, _RequestRefused) as refusal:
            response = refusal.response
        except HTTPException as error:  # Strawberry's own refusals, otherwise plain text
            response = strawberry_refusal(error.status_code, error.reason)
        except ServiceBusy as busy:
            # The database had no connection for authentication: one clean answer.
            response = _busy_response(busy)
        await response(scope, receive, send)

    async def create_streaming_response(
        self,
        request: Request | WebSocket,
        stream: Callable[[], AsyncIterator[str]],
        sub_response: Response,
        headers: Mapping[str, str],
    ) -> Response:
        """A subscription answered over HTTP, watched while it streams as sockets are (a
        user deactivated or a token expiring ends it within a second, saying why)."""
        authorization = request.headers.get("authorization")

        async def watched() -> AsyncIterator[str]:
            async with self.sockets.watching_stream(authorization):
                async for chunk in stream():
                    yield chunk

        return await super().create_streaming_response(request, watched, sub_response, headers)

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
            raise _RequestRefused(error.message) from None

    async def parse_http_body(
        self, request: AsyncHTTPRequestAdapter
    ) -> GraphQLRequestData | list[GraphQLRequestData]:
        """The request's operation, streamed (multipart) when it is a subscription whose
        sender accepts `multipart/mixed`; a subscription that cannot be streamed answers
        406 saying where streams are served, and any other operation is answered whole."""
        data = await super().parse_http_body(request)
        if isinstance(data, GraphQLRequestData):
            subscribes = self._subscribes(data)
            if subscribes and data.protocol == "http":
                if not _accepts_multipart(request.headers):
                    raise _RequestRefused(STREAMS, NOT_ACCEPTABLE, "SUBSCRIPTION_NEEDS_STREAM")
                data.protocol = "multipart-subscription"
            elif not subscribes and data.protocol != "http":
                data.protocol = "http"  # a query or mutation sent as a stream: one answer
        return data

    def _subscribes(self, data: GraphQLRequestData) -> bool:
        """Whether the operation is a subscription (the document is parsed here only when
        it names the word: most requests pay one substring search)."""
        query = data.query
        if not query or "subscription" not in query:
            return False
        try:
            document = parse(query, max_tokens=self.state.settings.max_tokens)
            kind = get_operation_type(document, data.operation_name)
        except (GraphQLError, RuntimeError):
            return False  # Strawberry says what is wrong with the document
        return kind is OperationType.SUBSCRIPTION

    async def get_context(
        self, request: Request | WebSocket, response: Response | WebSocket
    ) -> Context:
        principal, authorization = None, None
        if isinstance(request, Request) and not self._is_ide_page(request):
            authorization = request.headers.get("authorization")
            found = await principal_for(self.state, authorization)
            if isinstance(found, Refusal):
                raise _Unauthorized(found)
            principal = found
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
        if isinstance(principal, Refusal):
            # Closed here with the reason; Strawberry's own close ("Forbidden") then finds
            # the socket closed already.
            if isinstance(context.request, WebSocket):
                await context.request.close(code=FORBIDDEN, reason=principal.close_reason)
            raise ConnectionRejectionError({"message": principal.message})
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


def _accepts_multipart(headers: Mapping[str, str]) -> bool:
    """Whether the sender takes a multipart answer (GraphiQL sends `application/json,
    multipart/mixed`; Apollo adds `subscriptionSpec=1.0`)."""
    return "multipart/mixed" in headers.get("accept", "").lower()


def challenge(refusal: Refusal) -> str:
    """The `WWW-Authenticate` value of a 401 (RFC 6750 section 3): a request with no
    bearer token gets the bare challenge, any other refusal `invalid_token` and why."""
    if refusal is Refusal.MISSING:
        return f'Bearer realm="{REALM}"'
    return f'Bearer realm="{REALM}", error="invalid_token", error_description="{refusal.message}"'


class _Unauthorized(Exception):
    """No valid token: answered with HTTP 401 before any GraphQL runs, saying why."""

    def __init__(self, refusal: Refusal) -> None:
        super().__init__(refusal.message)
        self.refusal = refusal

    @property
    def response(self) -> Response:
        return error_response(
            UNAUTHORIZED,
            self.refusal.message,
            self.refusal.code,
            headers={"WWW-Authenticate": challenge(self.refusal)},
        )


class _RequestRefused(Exception):
    """A request that cannot be served, answered before any GraphQL runs (HTTP 400 for
    JSON that cannot be decoded)."""

    def __init__(self, message: str, status: int = BAD_REQUEST, code: str = "BAD_REQUEST") -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code

    @property
    def response(self) -> Response:
        return error_response(self.status, self.message, self.code)
