"""Connection and Run."""

from __future__ import annotations

from datetime import datetime
from typing import cast

import strawberry
from strawberry.scalars import JSON

from app.db import models
from app.domain.access import Seen
from app.domain.clock import as_utc
from app.domain.queue import PRIORITY_OF_RANK
from app.graphql.context import Info
from app.graphql.types.common import (
    TOTAL_COUNT,
    TOTAL_COUNT_IS_EXACT,
    ConnectionStatus,
    PageInfo,
    RunMode,
    RunPriority,
    RunStatus,
)
from app.graphql.types.environment import UserType
from app.graphql.types.group import MachineGroupType
from app.graphql.types.machine import MachineType


async def _group(info: Info, group_id: str | None) -> MachineGroupType | None:
    group = await info.context.loaders.seen_groups.load(group_id) if group_id else None
    return MachineGroupType.of(group, info) if group is not None else None


async def _machine(info: Info, machine_id: str | None) -> MachineType | None:
    machine = await info.context.loaders.seen_machines.load(machine_id) if machine_id else None
    return MachineType.of(machine) if machine is not None else None


async def _user(info: Info, user_id: str) -> UserType:
    return UserType.of(await info.context.loaders.users.load(user_id))


def _moment(value: datetime | None) -> datetime | None:
    return as_utc(value) if value is not None else None


@strawberry.type(name="Connection")
class ConnectionType:
    seen: strawberry.Private[Seen[models.Connection]]
    id: strawberry.ID
    name: str
    username: str = strawberry.field(description="The password is write-only and never returned.")
    status: ConnectionStatus
    broken_reason: str | None

    @property
    def row(self) -> models.Connection:
        """The connection's record."""
        return self.seen.record

    @classmethod
    def of(cls, seen: Seen[models.Connection]) -> ConnectionType:
        """The API view of a connection the viewer sees (never its password)."""
        row = seen.record
        return cls(
            seen=seen,
            id=strawberry.ID(row.id),
            name=row.name,
            username=row.username,
            status=ConnectionStatus(row.status),
            broken_reason=row.broken_reason,
        )

    @strawberry.field
    async def owner(self, info: Info) -> UserType:
        return await _user(info, self.row.owner_id)

    @strawberry.field(description="Exactly one of machine / group is set.")
    async def machine(self, info: Info) -> MachineType | None:
        return await _machine(info, self.row.machine_id)

    @strawberry.field
    async def group(self, info: Info) -> MachineGroupType | None:
        return await _group(info, self.row.group_id)


@strawberry.type(name="Run")
class RunType:
    seen: strawberry.Private[Seen[models.Run]]
    id: strawberry.ID
    flow_name: str
    inputs: JSON | None
    output: JSON | None
    status: RunStatus
    priority: RunPriority
    run_mode: RunMode
    enqueued_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    failure_reason: str | None

    @property
    def row(self) -> models.Run:
        """The run's record."""
        return self.seen.record

    @classmethod
    def of(cls, seen: Seen[models.Run]) -> RunType:
        """The API view of a run the principal sees (its inputs and output included)."""
        row = seen.record
        return cls(
            seen=seen,
            id=strawberry.ID(row.id),
            flow_name=row.flow_name,
            inputs=cast(JSON | None, row.inputs),
            output=cast(JSON | None, row.output),
            status=RunStatus(row.status),
            priority=PRIORITY_OF_RANK[row.priority],
            run_mode=RunMode(row.run_mode),
            enqueued_at=as_utc(row.enqueued_at),
            started_at=_moment(row.started_at),
            finished_at=_moment(row.finished_at),
            failure_reason=row.failure_reason,
        )

    @strawberry.field
    async def group(self, info: Info) -> MachineGroupType | None:
        return await _group(info, self.row.group_id)

    @strawberry.field
    async def machine(self, info: Info) -> MachineType | None:
        return await _machine(info, self.row.machine_id or self.row.target_machine_id)

    @strawberry.field
    async def connection(self, info: Info) -> ConnectionType | None:
        if self.row.connection_id is None:
            return None
        connection = await info.context.loaders.seen_connections.load(self.row.connection_id)
        return ConnectionType.of(connection) if connection is not None else None

    @strawberry.field
    async def started_by(self, info: Info) -> UserType:
        return await _user(info, self.row.started_by_id)

    @strawberry.field(description="1-based while QUEUED, else null.")
    async def queue_position(self, info: Info) -> int | None:
        return await info.context.loaders.queue_positions.load(self.row)

    @strawberry.field(
        description="While QUEUED: when it should start, from recent run durations; "
        "null when unknown (no finished runs to estimate from yet)."
    )
    async def estimated_start_at(self, info: Info) -> datetime | None:
        return await info.context.loaders.estimated_starts.load(self.row)


@strawberry.type(name="RunEdge")
class RunEdge:
    node: RunType
    cursor: str


@strawberry.type(name="RunConnection")
class RunConnection:
    edges: list[RunEdge]
    page_info: PageInfo
    total_count: int = strawberry.field(description=TOTAL_COUNT)
    total_count_is_exact: bool = strawberry.field(description=TOTAL_COUNT_IS_EXACT)
