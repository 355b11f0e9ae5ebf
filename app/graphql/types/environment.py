"""Environment and User."""

from __future__ import annotations

from typing import Protocol

import strawberry

from app.db import models
from app.domain.group_facts import Owner
from app.domain.users import reads_roles_of
from app.domain.validation import region_allows_machines
from app.graphql.context import Info
from app.graphql.types.common import SecurityRole


@strawberry.type(name="Environment")
class EnvironmentType:
    row: strawberry.Private[models.Environment]
    id: strawberry.ID
    name: str
    region: str
    machine_groups_available: bool

    @classmethod
    def of(cls, row: models.Environment | None) -> EnvironmentType:
        """The API view of an environment a foreign key guarantees exists."""
        assert row is not None
        return cls(
            row=row,
            id=strawberry.ID(row.id),
            name=row.name,
            region=row.region,
            machine_groups_available=region_allows_machines(row.region),
        )


@strawberry.type(name="User")
class UserType:
    row: strawberry.Private[models.User | Owner]
    id: strawberry.ID
    name: str
    deactivated: bool
    premium: bool

    @classmethod
    def of(cls, row: models.User | Owner | None) -> UserType:
        """The API view of a user a foreign key guarantees exists."""
        assert row is not None
        return cls(
            row=row,
            id=strawberry.ID(row.id),
            name=row.name,
            deactivated=row.deactivated,
            premium=row.premium,
        )

    @strawberry.field(
        description="The user's roles in the environment (default: `default`). Only the user"
        " and the system administrators of `default` read them; to others the list is empty."
    )
    async def security_roles(
        self, info: Info, environment_id: strawberry.ID | None = None
    ) -> list[SecurityRole]:
        context = info.context
        if not reads_roles_of(
            context.viewer_or_none, self.row.id, context.app.default_environment_id
        ):
            return []
        roles = await context.loaders.roles.load(self.row.id)
        environment = context.loaders.environment_id(environment_id)
        return sorted(roles.get(environment, frozenset()), key=lambda role: role.value)


class _OwnedRecord(Protocol):
    environment_id: str
    owner_id: str


class _ApiRecord(Protocol):
    @property
    def row(self) -> _OwnedRecord: ...


async def environment_of(root: _ApiRecord, info: Info) -> EnvironmentType:
    """The environment a group or machine lives in (shared resolver)."""
    return EnvironmentType.of(await info.context.loaders.environments.load(root.row.environment_id))
