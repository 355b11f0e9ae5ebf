"""MachineGroup, its grants and its page type."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

import strawberry
from sqlalchemy.ext.asyncio import AsyncSession

from app.domain.access import Owned, Seen, governed, level_of, visible_grants
from app.domain.clock import as_utc
from app.domain.group_facts import GroupFacts, GroupRecord
from app.graphql.context import Info
from app.graphql.loaders import Later
from app.graphql.types.common import TOTAL_COUNT, TOTAL_COUNT_IS_EXACT, AccessLevel, PageInfo
from app.graphql.types.environment import EnvironmentType, UserType, environment_of

if TYPE_CHECKING:
    from app.graphql.types.machine import MachineType
    from app.graphql.types.run import RunType

MachineRef = Annotated["MachineType", strawberry.lazy("app.graphql.types.machine")]
RunRef = Annotated["RunType", strawberry.lazy("app.graphql.types.run")]

FACT_FIELDS = frozenset({"owner", "myAccess", "machineCount", "runningCount", "queuedCount"})
GRANT_FIELDS = frozenset({"hasDeactivatedUsers", "access"})


@strawberry.type(name="AccessGrant")
class AccessGrantType:
    user: UserType
    access: AccessLevel


async def viewer_level(info: Info, group: Owned) -> AccessLevel | None:
    """The viewer's level on a group (None for an administrator without a grant)."""
    viewer = info.context.viewer_or_none
    if viewer is None:
        return None
    granted = await info.context.loaders.group_levels.load(group.id)
    return level_of(viewer.id, group.owner_id, granted)


async def prime_grants(
    info: Info, session: AsyncSession, groups: Sequence[GroupRecord], fields: Collection[str]
) -> None:
    """Read the grants of a page's groups in the page's session when `fields` show them."""
    if groups and GRANT_FIELDS.intersection(fields):
        await info.context.loaders.group_grants.prime_from(session, [group.id for group in groups])


@strawberry.type(name="MachineGroup")
class MachineGroupType:
    # Every field that can be is plain data, filled once by `of`: graphql-core reads it
    # with no resolver call, which on a page of 50 groups is most of what Strawberry would
    # spend. Facts a page did not read come as `Later` values, loaded only when selected.
    seen: strawberry.Private[Seen[GroupRecord]]
    id: strawberry.ID
    environment: EnvironmentType = strawberry.field(resolver=environment_of)
    name: str
    description: str | None
    owner: UserType | Later[Any, UserType] = strawberry.field(graphql_type=UserType)
    my_access: AccessLevel | Later[Any, AccessLevel | None] | None = strawberry.field(
        graphql_type=AccessLevel | None,
        description="null only for a SYSTEM_ADMINISTRATOR without a grant",
    )
    machine_count: int | Later[Any, int] = strawberry.field(graphql_type=int)
    running_count: int | Later[Any, int] = strawberry.field(graphql_type=int)
    queued_count: int | Later[Any, int] = strawberry.field(graphql_type=int)
    has_password: bool
    maintenance: bool

    @strawberry.field(description="The 'shared with deactivated users' notice.")
    async def has_deactivated_users(self, info: Info) -> bool:
        grants = await info.context.loaders.group_grants.load(self.row.id)
        return any(user.deactivated for user, _level in grants)

    @strawberry.field
    async def machines(self, info: Info) -> list[MachineRef]:
        from app.graphql.types.machine import MachineType

        rows = await info.context.loaders.group_machines.load(self.row.id)
        return [MachineType.of(machine) for machine in governed(self.seen, rows)]

    @strawberry.field(
        description="Full list for those who may share; otherwise only the viewer's own grant."
    )
    async def access(self, info: Info) -> list[AccessGrantType]:
        owner = await info.context.loaders.users.load(self.row.owner_id)
        assert owner is not None
        grants = [(owner, AccessLevel.OWNER)]
        grants += await info.context.loaders.group_grants.load(self.row.id)
        level = await viewer_level(info, self.row)
        shown = visible_grants(info.context.caller, self.row.environment_id, level, grants)
        return [AccessGrantType(user=UserType.of(user), access=access) for user, access in shown]

    @strawberry.field(description="Queued runs in dispatch order.")
    async def queue(self, info: Info, first: int | None = 50) -> list[RunRef]:
        from app.graphql.types.run import RunType

        runs = await info.context.loaders.group_queues.load((self.row.id, first))
        return [RunType.of(run) for run in governed(self.seen, runs)]

    created_at: datetime

    @property
    def row(self) -> GroupRecord:
        """The group's record."""
        return self.seen.record

    @classmethod
    def of(
        cls, seen: Seen[GroupRecord], info: Info, facts: GroupFacts | None = None
    ) -> MachineGroupType:
        """The API view of a group the viewer sees, with its facts when the caller read them."""
        row = seen.record
        return cls(
            seen=seen,
            id=strawberry.ID(row.id),
            name=row.name,
            description=row.description,
            has_password=row.password_hash is not None,
            maintenance=row.maintenance,
            created_at=as_utc(row.created_at),
            **(_known(row, info, facts) if facts else _deferred(row, info)),
        )


def _known(row: GroupRecord, info: Info, facts: GroupFacts) -> dict[str, Any]:
    viewer = info.context.viewer_or_none
    return {
        "owner": UserType.of(facts.owner),
        "my_access": level_of(viewer.id, row.owner_id, facts.granted) if viewer else None,
        "machine_count": facts.machine_count,
        "running_count": facts.running_count,
        "queued_count": facts.queued_count,
    }


def _deferred(row: GroupRecord, info: Info) -> dict[str, Any]:
    # Each loader is looked up when the value is awaited: a subscription renews them.
    def loaders() -> Any:
        return info.context.loaders

    return {
        "owner": Later(lambda: loaders().users.load(row.owner_id), UserType.of),
        "my_access": Later(lambda: viewer_level(info, row), lambda level: level),
        "machine_count": Later(lambda: loaders().machine_counts.load(row.id), int),
        "running_count": Later(lambda: loaders().run_counts.load(row.id), lambda n: n[0]),
        "queued_count": Later(lambda: loaders().run_counts.load(row.id), lambda n: n[1]),
    }


@strawberry.type(name="MachineGroupEdge")
class MachineGroupEdge:
    node: MachineGroupType
    cursor: str


@strawberry.type(name="MachineGroupConnection")
class MachineGroupConnection:
    edges: list[MachineGroupEdge]
    page_info: PageInfo
    total_count: int = strawberry.field(description=TOTAL_COUNT)
    total_count_is_exact: bool = strawberry.field(description=TOTAL_COUNT_IS_EXACT)
