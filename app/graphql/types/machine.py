"""Machine and its page type."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated

import strawberry

from app.db import models
from app.domain.clock import as_utc
from app.domain.status import machine_status
from app.graphql.context import Info
from app.graphql.types.common import AccessLevel, MachineStatus, PageInfo
from app.graphql.types.environment import EnvironmentType, UserType
from app.graphql.types.group import MachineGroupType, viewer_level

if TYPE_CHECKING:
    from app.graphql.types.run import RunType

RunRef = Annotated["RunType", strawberry.lazy("app.graphql.types.run")]


@strawberry.type(name="Machine")
class MachineType:
    row: strawberry.Private[models.Machine]

    async def _group(self, info: Info) -> models.MachineGroup | None:
        if self.row.group_id is None:
            return None
        return await info.context.loaders.groups.load(self.row.group_id)

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

    @strawberry.field(description="While the machine is in a group: the viewer's level on it.")
    async def my_access(self, info: Info) -> AccessLevel | None:
        group = await self._group(info)
        if group is not None:
            return await viewer_level(info, group)
        viewer = info.context.viewer_or_none
        if viewer is None:
            return None
        if self.row.owner_id == viewer.id:
            return AccessLevel.OWNER
        return await info.context.loaders.machine_levels.load(self.row.id)

    @strawberry.field
    async def status(self, info: Info) -> MachineStatus:
        group = await self._group(info)
        settings = info.context.app.settings
        now = info.context.app.services.clock.now()
        in_maintenance = group is not None and group.maintenance
        return machine_status(self.row, in_maintenance, now, settings.machine_timeout)

    @strawberry.field
    async def group(self, info: Info) -> MachineGroupType | None:
        group = await self._group(info)
        return MachineGroupType(row=group) if group is not None else None

    @strawberry.field
    async def current_run(self, info: Info) -> RunRef | None:
        from app.graphql.types.run import RunType

        run = await info.context.loaders.running_runs.load(self.row.id)
        return RunType(row=run) if run is not None else None

    @strawberry.field
    def last_seen_at(self) -> datetime | None:
        return as_utc(self.row.last_seen_at) if self.row.last_seen_at else None


@strawberry.type(name="MachineEdge")
class MachineEdge:
    node: MachineType
    cursor: str


@strawberry.type(name="MachineConnection")
class MachineConnection:
    edges: list[MachineEdge]
    page_info: PageInfo
    total_count: int
