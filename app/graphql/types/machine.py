"""Machine and its page type."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated

import strawberry

from app.db import models
from app.domain.access import Seen, level_of
from app.domain.clock import as_utc
from app.domain.status import machine_status
from app.graphql.context import Info
from app.graphql.types.common import (
    TOTAL_COUNT,
    TOTAL_COUNT_IS_EXACT,
    AccessLevel,
    MachineStatus,
    PageInfo,
)
from app.graphql.types.environment import EnvironmentType, UserType, environment_of
from app.graphql.types.group import MachineGroupType, viewer_level

if TYPE_CHECKING:
    from app.graphql.types.run import RunType

RunRef = Annotated["RunType", strawberry.lazy("app.graphql.types.run")]


@strawberry.type(name="Machine")
class MachineType:
    seen: strawberry.Private[Seen[models.Machine]]
    id: strawberry.ID

    @property
    def row(self) -> models.Machine:
        """The machine's record."""
        return self.seen.record

    async def _group(self, info: Info) -> models.MachineGroup | None:
        """The machine's group as a fact (maintenance, the viewer's level), not handed out."""
        if self.row.group_id is None:
            return None
        return await info.context.loaders.group_rows.load(self.row.group_id)

    environment: EnvironmentType = strawberry.field(resolver=environment_of)

    name: str
    description: str | None

    @strawberry.field
    async def owner(self, info: Info) -> UserType:
        return UserType.of(await info.context.loaders.users.load(self.row.owner_id))

    @strawberry.field(description="While the machine is in a group: the viewer's level on it.")
    async def my_access(self, info: Info) -> AccessLevel | None:
        group = await self._group(info)
        if group is not None:
            return await viewer_level(info, group)
        viewer = info.context.viewer_or_none
        if viewer is None:
            return None
        granted = await info.context.loaders.machine_levels.load(self.row.id)
        return level_of(viewer.id, self.row.owner_id, granted)

    @strawberry.field
    async def status(self, info: Info) -> MachineStatus:
        group = await self._group(info)
        settings = info.context.app.settings
        now = info.context.app.services.clock.now()
        in_maintenance = group is not None and group.maintenance
        return machine_status(self.row, in_maintenance, now, settings.machine_timeout)

    @strawberry.field
    async def group(self, info: Info) -> MachineGroupType | None:
        if self.row.group_id is None:
            return None
        group = await info.context.loaders.seen_groups.load(self.row.group_id)
        return MachineGroupType.of(group, info) if group is not None else None

    @strawberry.field
    async def current_run(self, info: Info) -> RunRef | None:
        from app.graphql.types.run import RunType

        run = await info.context.loaders.running_runs.load(self.row.id)
        return RunType.of(run) if run is not None else None

    last_seen_at: datetime | None

    @classmethod
    def of(cls, seen: Seen[models.Machine]) -> MachineType:
        """The API view of a machine the principal sees."""
        row = seen.record
        return cls(
            seen=seen,
            id=strawberry.ID(row.id),
            name=row.name,
            description=row.description,
            last_seen_at=as_utc(row.last_seen_at) if row.last_seen_at else None,
        )


@strawberry.type(name="MachineEdge")
class MachineEdge:
    node: MachineType
    cursor: str


@strawberry.type(name="MachineConnection")
class MachineConnection:
    edges: list[MachineEdge]
    page_info: PageInfo
    total_count: int = strawberry.field(description=TOTAL_COUNT)
    total_count_is_exact: bool = strawberry.field(description=TOTAL_COUNT_IS_EXACT)
