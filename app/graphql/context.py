"""The typed context every resolver gets."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TypeAlias

from starlette.requests import Request
from starlette.responses import Response
from starlette.websockets import WebSocket
from strawberry.types import Info as StrawberryInfo

from app.db.engine import Database
from app.domain.caller import Caller, MachineAgent, Principal, Viewer
from app.domain.enums import ErrorCode
from app.domain.errors import DomainError
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
    loaders: Loaders = field(init=False)

    def __post_init__(self) -> None:
        self.refresh()

    def refresh(self, principal: Principal | None = None) -> None:
        """New loaders (and optionally a new principal): a subscription calls this before
        each message, so nothing cached for an earlier message is served again."""
        if principal is not None:
            self.principal = principal
        viewer_id = self.principal.id if isinstance(self.principal, Viewer) else None
        self.loaders = Loaders(
            self.app.db, viewer_id, self.app.default_environment_id, self.app.services.clock
        )

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
