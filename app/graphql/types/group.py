"""MachineGroup, its grants and its page type."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated

import strawberry

from app.db import models
from app.domain.access import group_level_for, may_share
from app.domain.clock import as_utc
from app.domain.enums import RecordKind
from app.domain.queue import queued_runs
from app.graphql.context import Info
from app.graphql.types.common import AccessLevel, PageInfo
from app.graphql.types.environment import EnvironmentType, UserType

if TYPE_CHECKING:
    from app.graphql.types.machine import MachineType
    from app.graphql.types.run import RunType

MachineRef = Annotated["MachineType", strawberry.lazy("app.graphql.types.machine")]
RunRef = Annotated["RunType", strawberry.lazy("app.graphql.types.run")]


@strawberry.type(name="AccessGrant")
class AccessGrantType:
    user: UserType
    access: AccessLevel


async def viewer_level(info: Info, group: models.MachineGroup) -> AccessLevel | None:
    """The viewer's level on a group (None for an administrator without a grant)."""
    viewer = info.context.viewer_or_none
    if viewer is None:
        return None
    granted = await info.context.loaders.group_levels.load(group.id)
    return group_level_for(viewer, group, granted)


@strawberry.type(name="MachineGroup")
class MachineGroupType:
    row: strawberry.Private[models.MachineGroup]

    @strawberry.field
    def id(self) -> strawberry.ID:
        return strawberry.ID(self.row.id)

    @strawberry.field
    async def environment(self, info: Info) -> EnvironmentType:
        environment = await info.context.loaders.environments.load(self.row.environment_id)
        assert environment is not None  # a foreign key guarantees it
        return EnvironmentType(row=environment)

    @strawberry.field
    def name(self) -> str:
        return self.row.name

    @strawberry.field
    def description(self) -> str | None:
        return self.row.description

    @strawberry.field
    async def owner(self, info: Info) -> UserType:
        owner = await info.context.loaders.users.load(self.row.owner_id)
        assert owner is not None  # a foreign key guarantees it
        return UserType(row=owner)

    @strawberry.field(description="null only for a SYSTEM_ADMINISTRATOR without a grant")
    async def my_access(self, info: Info) -> AccessLevel | None:
        return await viewer_level(info, self.row)

    @strawberry.field
    async def machine_count(self, info: Info) -> int:
        return await info.context.loaders.machine_counts.load(self.row.id)

    @strawberry.field
    async def running_count(self, info: Info) -> int:
        running, _queued = await info.context.loaders.run_counts.load(self.row.id)
        return running

    @strawberry.field
    async def queued_count(self, info: Info) -> int:
        _running, queued = await info.context.loaders.run_counts.load(self.row.id)
        return queued

    @strawberry.field
    def has_password(self) -> bool:
        return self.row.password_hash is not None

    @strawberry.field
    def maintenance(self) -> bool:
        return self.row.maintenance

    @strawberry.field(description="The 'shared with deactivated users' notice.")
    async def has_deactivated_users(self, info: Info) -> bool:
        grants = await info.context.loaders.group_grants.load(self.row.id)
        return any(user.deactivated for user, _level in grants)

    @strawberry.field
    async def machines(self, info: Info) -> list[MachineRef]:
        from app.graphql.types.machine import MachineType

        rows = await info.context.loaders.group_machines.load(self.row.id)
        return [MachineType(row=row) for row in rows]

    @strawberry.field(
        description="Full list for those who may share; otherwise only the viewer's own grant."
    )
    async def access(self, info: Info) -> list[AccessGrantType]:
        owner = await info.context.loaders.users.load(self.row.owner_id)
        assert owner is not None
        grants = [(owner, AccessLevel.OWNER)]
        grants += await info.context.loaders.group_grants.load(self.row.id)
        level = await viewer_level(info, self.row)
        caller = info.context.caller
        if not may_share(caller, self.row.environment_id, level, RecordKind.MACHINE_GROUP):
            grants = [(user, access) for user, access in grants if user.id == caller.viewer.id]
        return [AccessGrantType(user=UserType(row=user), access=access) for user, access in grants]

    @strawberry.field(description="Queued runs in dispatch order.")
    async def queue(self, info: Info, first: int | None = 50) -> list[RunRef]:
        from app.graphql.types.run import RunType

        async with info.context.db.read() as session:
            runs = await queued_runs(session, self.row.id, first)
        return [RunType(row=run) for run in runs]

    @strawberry.field
    def created_at(self) -> datetime:
        return as_utc(self.row.created_at)


@strawberry.type(name="MachineGroupEdge")
class MachineGroupEdge:
    node: MachineGroupType
    cursor: str


@strawberry.type(name="MachineGroupConnection")
class MachineGroupConnection:
    edges: list[MachineGroupEdge]
    page_info: PageInfo
    total_count: int
