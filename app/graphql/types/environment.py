"""Environment and User."""

from __future__ import annotations

import strawberry

from app.db import models
from app.domain.validation import region_allows_machines
from app.graphql.context import Info
from app.graphql.types.common import SecurityRole


@strawberry.type(name="Environment")
class EnvironmentType:
    row: strawberry.Private[models.Environment]

    @strawberry.field
    def id(self) -> strawberry.ID:
        return strawberry.ID(self.row.id)

    @strawberry.field
    def name(self) -> str:
        return self.row.name

    @strawberry.field
    def region(self) -> str:
        return self.row.region

    @strawberry.field
    def machine_groups_available(self) -> bool:
        return region_allows_machines(self.row.region)


@strawberry.type(name="User")
class UserType:
    row: strawberry.Private[models.User]

    @strawberry.field
    def id(self) -> strawberry.ID:
        return strawberry.ID(self.row.id)

    @strawberry.field
    def name(self) -> str:
        return self.row.name

    @strawberry.field
    def deactivated(self) -> bool:
        return self.row.deactivated

    @strawberry.field
    def premium(self) -> bool:
        return self.row.premium

    @strawberry.field
    async def security_roles(
        self, info: Info, environment_id: strawberry.ID | None = None
    ) -> list[SecurityRole]:
        roles = await info.context.loaders.roles.load(self.row.id)
        environment = info.context.loaders.environment_id(environment_id)
        return sorted(roles.get(environment, frozenset()), key=lambda role: role.value)
