"""Environments, users and roles: `me`, `environments`, `userByName`, admin mutations."""

from __future__ import annotations

from datetime import datetime

import strawberry

from app.db import models
from app.domain import environments, users
from app.graphql.context import Info
from app.graphql.mutation import attempt
from app.graphql.types.common import MutationError, SecurityRole
from app.graphql.types.environment import EnvironmentType, UserType


@strawberry.input
class CreateUserInput:
    name: str
    premium: bool | None = False


@strawberry.input
class CreateEnvironmentInput:
    name: str
    region: str


@strawberry.type
class UserPayload:
    user: UserType | None
    errors: list[MutationError]

    @classmethod
    def of(cls, result: tuple[models.User | None, list[MutationError]]) -> UserPayload:
        """The payload of a user mutation."""
        user, errors = result
        return cls(user=UserType.of(user) if user else None, errors=errors)


@strawberry.type
class EnvironmentPayload:
    environment: EnvironmentType | None
    errors: list[MutationError]


@strawberry.type(name="PolicyStatus")
class PolicyStatusType:
    loaded_at: datetime
    checksum: str
    last_error: str | None = strawberry.field(
        description="Set when the newest edit of policies/ was rejected; the previous policy"
        " stays in force."
    )


@strawberry.type
class AdminQuery:
    @strawberry.field(description="SYSTEM_ADMINISTRATOR only.")
    async def policy_status(self, info: Info) -> PolicyStatusType:
        caller = info.context.caller
        async with info.context.db.read() as session:
            await environments.require_user_administrator(session, caller, "read the policy status")
        policy = caller.services.policy
        return PolicyStatusType(
            loaded_at=policy.table.loaded_at,
            checksum=policy.table.checksum,
            last_error=policy.last_error,
        )

    @strawberry.field(description="The user the bearer token names.")
    def me(self, info: Info) -> UserType:
        return UserType.of(info.context.viewer.user)

    @strawberry.field(description="The environments where the viewer holds any security role.")
    async def environments(self, info: Info) -> list[EnvironmentType]:
        async with info.context.db.read() as session:
            rows = await environments.environments_of(session, info.context.viewer)
        return [EnvironmentType.of(row) for row in rows]

    @strawberry.field
    async def user_by_name(self, info: Info, name: str) -> UserType | None:
        info.context.viewer  # noqa: B018  (agents may not look users up)
        async with info.context.db.read() as session:
            user = await users.user_by_name(session, name)
        return UserType.of(user) if user else None


@strawberry.type
class AdminMutation:
    @strawberry.mutation(description="SYSTEM_ADMINISTRATOR of the default environment only.")
    async def create_environment(
        self, info: Info, input: CreateEnvironmentInput
    ) -> EnvironmentPayload:
        environment, errors = await attempt(
            info,
            lambda s, c: environments.create_environment(
                s, c, name=input.name, region=input.region
            ),
        )
        row = EnvironmentType.of(environment) if environment else None
        return EnvironmentPayload(environment=row, errors=errors)

    @strawberry.mutation
    async def create_user(self, info: Info, input: CreateUserInput) -> UserPayload:
        premium = bool(input.premium)
        return UserPayload.of(
            await attempt(
                info, lambda s, c: users.create_user(s, c, name=input.name, premium=premium)
            )
        )

    @strawberry.mutation
    async def set_user_premium(
        self, info: Info, user_id: strawberry.ID, premium: bool
    ) -> UserPayload:
        return UserPayload.of(
            await attempt(info, lambda s, c: users.set_premium(s, c, user_id, premium))
        )

    @strawberry.mutation
    async def deactivate_user(self, info: Info, user_id: strawberry.ID) -> UserPayload:
        return UserPayload.of(await attempt(info, lambda s, c: users.deactivate(s, c, user_id)))

    @strawberry.mutation
    async def assign_security_role(
        self,
        info: Info,
        user_id: strawberry.ID,
        role: SecurityRole,
        environment_id: strawberry.ID | None = None,
    ) -> UserPayload:
        return UserPayload.of(
            await attempt(info, lambda s, c: users.assign_role(s, c, user_id, role, environment_id))
        )

    @strawberry.mutation
    async def remove_security_role(
        self,
        info: Info,
        user_id: strawberry.ID,
        role: SecurityRole,
        environment_id: strawberry.ID | None = None,
    ) -> UserPayload:
        return UserPayload.of(
            await attempt(info, lambda s, c: users.remove_role(s, c, user_id, role, environment_id))
        )
