"""The typed context every resolver gets."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TypeAlias

from starlette.requests import Request
from starlette.responses import Response
from starlette.websockets import WebSocket
from strawberry.types import Info as StrawberryInfo

from app.db.engine import Database
from app.domain.caller import Caller, MachineAgent, Principal, Viewer
from app.domain.enums import ErrorCode
from app.domain.errors import DomainError
from app.domain.identity import Refusal
from app.domain.sight import Sight
from app.graphql.authn import principal_for
from app.graphql.loaders import Loaders
from app.state import AppState


@dataclass
class Context:
    """The request, the service, who is asking, and the request's loaders."""

    request: Request | WebSocket
    response: Response | WebSocket | None
    app: AppState
    principal: Principal | None
    connection_params: dict[str, object] | None = None
    # A WebSocket's `Authorization` value: each operation on the socket proves it again.
    authorization: str | None = None
    loaders: Loaders = field(init=False)

    def __post_init__(self) -> None:
        self.refresh()

    def refresh(self, principal: Principal | None = None) -> None:
        """New loaders (and optionally a new principal): a subscription calls this before
        each message, so nothing cached for an earlier message is served again."""
        if principal is not None:
            self.principal = principal
        self.loaders = Loaders(
            self.app.db, self.principal, self.app.default_environment_id, self.app.services.clock
        )

    async def for_operation(self) -> Context | Refusal:
        """A context for one operation on a socket, for the principal as they are now, or
        why there is none (the token expired, its user was deactivated...)."""
        principal = await principal_for(self.app, self.authorization)
        if isinstance(principal, Refusal):
            return principal
        return replace(self, principal=principal)

    async def renew(self) -> Refusal | None:
        """Check the principal again, for the rest of a live stream: why they are gone, or
        None while they stay (the stream's next decisions then read their roles and
        grants as they are now)."""
        principal = await principal_for(self.app, self.authorization)
        if isinstance(principal, Refusal):
            return principal
        self.refresh(principal)
        return None

    @property
    def sight(self) -> Sight:
        """What the principal asking may see, decided in batches."""
        return self.loaders.sight

    @property
    def db(self) -> Database:
        """The database."""
        return self.app.db

    @property
    def viewer(self) -> Viewer:
        """The user asking; agents asking user questions get PERMISSION_DENIED."""
        if not isinstance(self.principal, Viewer):
            raise DomainError(ErrorCode.PERMISSION_DENIED, "this operation needs a user token")
        return self.principal

    @property
    def viewer_or_none(self) -> Viewer | None:
        """The user asking, or None for an agent."""
        return self.principal if isinstance(self.principal, Viewer) else None

    @property
    def caller(self) -> Caller:
        """The user asking, with the services the rules need."""
        return Caller(viewer=self.viewer, services=self.app.services)

    @property
    def agent(self) -> MachineAgent:
        """The machine agent asking; users asking agent questions get PERMISSION_DENIED."""
        if not isinstance(self.principal, MachineAgent):
            raise DomainError(ErrorCode.PERMISSION_DENIED, "this operation needs a machine key")
        return self.principal


Info: TypeAlias = StrawberryInfo[Context, None]
