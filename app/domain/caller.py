"""Who is asking, and the world they ask in: every rule takes one `Caller`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from app.authz.enforcer import PolicyStore
from app.db.models import Machine, User
from app.domain.clock import Clock
from app.domain.enums import SecurityRole
from app.settings import Settings


@dataclass(frozen=True)
class Viewer:
    """An authenticated, active user and their security roles per environment."""

    user: User
    roles: Mapping[str, frozenset[SecurityRole]] = field(default_factory=dict)

    @property
    def id(self) -> str:
        """The user's id."""
        return self.user.id

    def roles_in(self, environment_id: str) -> frozenset[SecurityRole]:
        """The roles the user holds in one environment."""
        return self.roles.get(environment_id, frozenset())

    def administers(self, environment_id: str) -> bool:
        """Whether the user is a SYSTEM_ADMINISTRATOR of the environment."""
        return SecurityRole.SYSTEM_ADMINISTRATOR in self.roles_in(environment_id)


@dataclass(frozen=True)
class MachineAgent:
    """A machine's agent, authenticated by its machine key."""

    machine: Machine


Principal = Viewer | MachineAgent


@dataclass(frozen=True)
class Services:
    """What the rules need besides the database: settings, time and the policy in force."""

    settings: Settings
    clock: Clock
    policy: PolicyStore


@dataclass(frozen=True)
class Caller:
    """A user's request: the viewer plus the services. `via` names a caller who is no
    user of the API (the command line): their changes are audited with no actor."""

    viewer: Viewer
    services: Services
    via: str | None = None

    @property
    def actor_id(self) -> str | None:
        """Who the audit trail says did it: the viewer, or nobody for the command line."""
        return None if self.via else self.viewer.id

    @property
    def settings(self) -> Settings:
        """The service settings."""
        return self.services.settings

    @property
    def clock(self) -> Clock:
        """The clock rules read time from."""
        return self.services.clock
