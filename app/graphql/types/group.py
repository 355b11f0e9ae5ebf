"""MachineGroup, its grants and its page type."""

from __future__ import annotations

from collections.abc import Awaitable, Collection, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Annotated

import strawberry
from sqlalchemy.ext.asyncio import AsyncSession
from strawberry.utils.await_maybe import await_maybe

from app.db import models
from app.domain.access import group_level_for, may_share
from app.domain.clock import as_utc
from app.domain.enums import RecordKind
from app.domain.group_facts import group_facts
from app.domain.queue import queued_runs
from app.graphql.context import Info
from app.graphql.loaders import settled
from app.graphql.types.common import AccessLevel, PageInfo
from app.graphql.types.environment import EnvironmentType, UserType, environment_of, owner_of

if TYPE_CHECKING:
    from app.graphql.types.machine import MachineType
    from app.graphql.types.run import RunType

MachineRef = Annotated["MachineType", strawberry.lazy("app.graphql.types.machine")]
RunRef = Annotated["RunType", strawberry.lazy("app.graphql.types.run")]


@strawberry.type(name="AccessGrant")
class AccessGrantType:
    user: UserType
    access: AccessLevel


def viewer_level(
    info: Info, group: models.MachineGroup
) -> AccessLevel | Awaitable[AccessLevel | None] | None:
    """The viewer's level on a group (None for an administrator without a grant)."""
    viewer = info.context.viewer_or_none
    if viewer is None:
        return None
    return settled(
        info.context.loaders.group_levels.load(group.id),
        lambda granted: group_level_for(viewer, group, granted),
    )


FACT_FIELDS = frozenset({"owner", "myAccess", "machineCount", "runningCount", "queuedCount"})
GRANT_FIELDS = frozenset({"hasDeactivatedUsers", "access"})


async def prime_groups(
    info: Info,
    session: AsyncSession,
    groups: Sequence[models.MachineGroup],
    fields: Collection[str],
) -> None:
    """Load, in the page's own session, what its `fields` will ask of each group, so that
    those fields answer synchronously."""
    loaders = info.context.loaders
    ids = [group.id for group in groups]
    if ids and FACT_FIELDS.intersection(fields):
        viewer = info.context.viewer_or_none
        facts = await group_facts(session, viewer.id if viewer else None, ids)
        loaders.users.prime_many({fact.owner.id: fact.owner for fact in facts.values()})
        loaders.group_levels.prime_many({key: fact.granted for key, fact in facts.items()})
        loaders.machine_counts.prime_many({key: f.machine_count for key, f in facts.items()})
        loaders.run_counts.prime_many(
            {key: (fact.running_count, fact.queued_count) for key, fact in facts.items()}
        )
    if ids and GRANT_FIELDS.intersection(fields):
        await loaders.prime(session, [(loaders.group_grants, ids)])


@strawberry.type(name="MachineGroup")
class MachineGroupType:
    # Plain fields are copied from the row once: graphql-core reads them with no resolver
    # call, which on a page of 50 groups is most of what the framework would spend.
    row: strawberry.Private[models.MachineGroup]
    id: strawberry.ID

    environment: EnvironmentType = strawberry.field(resolver=environment_of)

    name: str
    description: str | None

    # The fields below answer synchronously when the page primed their loaders (see
    # `settled`); hence `graphql_type` with a return annotation that admits an awaitable.
    @strawberry.field(graphql_type=UserType)
    def owner(self, info: Info) -> UserType | Awaitable[UserType]:
        return owner_of(self, info)

    @strawberry.field(
        graphql_type=AccessLevel | None,
        description="null only for a SYSTEM_ADMINISTRATOR without a grant",
    )
    def my_access(self, info: Info) -> AccessLevel | Awaitable[AccessLevel | None] | None:
        return viewer_level(info, self.row)

    @strawberry.field(graphql_type=int)
    def machine_count(self, info: Info) -> int | Awaitable[int]:
        return settled(info.context.loaders.machine_counts.load(self.row.id), int)

    @strawberry.field(graphql_type=int)
    def running_count(self, info: Info) -> int | Awaitable[int]:
        return settled(info.context.loaders.run_counts.load(self.row.id), lambda counts: counts[0])

    @strawberry.field(graphql_type=int)
    def queued_count(self, info: Info) -> int | Awaitable[int]:
        return settled(info.context.loaders.run_counts.load(self.row.id), lambda counts: counts[1])

    has_password: bool
    maintenance: bool

    @strawberry.field(graphql_type=bool, description="The 'shared with deactivated users' notice.")
    def has_deactivated_users(self, info: Info) -> bool | Awaitable[bool]:
        return settled(
            info.context.loaders.group_grants.load(self.row.id),
            lambda grants: any(user.deactivated for user, _level in grants),
        )

    @strawberry.field
    async def machines(self, info: Info) -> list[MachineRef]:
        from app.graphql.types.machine import MachineType

        rows = await info.context.loaders.group_machines.load(self.row.id)
        return [MachineType.of(row) for row in rows]

    @strawberry.field(
        description="Full list for those who may share; otherwise only the viewer's own grant."
    )
    async def access(self, info: Info) -> list[AccessGrantType]:
        owner = await info.context.loaders.users.load(self.row.owner_id)
        assert owner is not None
        grants = [(owner, AccessLevel.OWNER)]
        grants += await info.context.loaders.group_grants.load(self.row.id)
        level = await await_maybe(viewer_level(info, self.row))
        caller = info.context.caller
        if not may_share(caller, self.row.environment_id, level, RecordKind.MACHINE_GROUP):
            grants = [(user, access) for user, access in grants if user.id == caller.viewer.id]
        return [AccessGrantType(user=UserType.of(user), access=access) for user, access in grants]

    @strawberry.field(description="Queued runs in dispatch order.")
    async def queue(self, info: Info, first: int | None = 50) -> list[RunRef]:
        from app.graphql.types.run import RunType

        async with info.context.db.read() as session:
            runs = await queued_runs(session, self.row.id, first)
        return [RunType.of(run) for run in runs]

    created_at: datetime

    @classmethod
    def of(cls, row: models.MachineGroup) -> MachineGroupType:
        """The API view of a group row."""
        return cls(
            row=row,
            id=strawberry.ID(row.id),
            name=row.name,
            description=row.description,
            has_password=row.password_hash is not None,
            maintenance=row.maintenance,
            created_at=as_utc(row.created_at),
        )


@strawberry.type(name="MachineGroupEdge")
class MachineGroupEdge:
    node: MachineGroupType
    cursor: str


@strawberry.type(name="MachineGroupConnection")
class MachineGroupConnection:
    edges: list[MachineGroupEdge]
    page_info: PageInfo
    total_count: int
