"""Strawberry's ASGI view with bearer-token authentication and the typed context."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.exceptions import ConnectionRejectionError
from strawberry.types.unset import UNSET, UnsetType

from app.domain.caller import MachineAgent, Principal
from app.domain.identity import authenticate, bearer_token
from app.domain.machines import touch
from app.graphql.context import Context
from app.graphql.schema import schema
from app.state import AppState

UNAUTHORIZED = 401


class GraphQLView(GraphQL[Context, None]):
    """`/graphql`: every operation needs a valid bearer token of an active user or a machine."""

    def __init__(self, state: AppState) -> None:
        super().__init__(schema, graphql_ide="graphiql" if state.settings.graphiql else None)
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        except _Unauthorized as refusal:
            await refusal.response(scope, receive, send)

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
            async with state.transaction() as session:
                machine = await touch(
                    session,
                    principal.machine.id,
                    state.services.clock.now(),
                    state.settings.machine_timeout,
                )
            principal = MachineAgent(machine) if machine is not None else None
        return principal


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
