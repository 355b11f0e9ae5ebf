"""Connection and Run."""

from __future__ import annotations

from datetime import datetime
from typing import cast

import strawberry
from strawberry.scalars import JSON

from app.db import models
from app.domain.clock import as_utc
from app.domain.queue import PRIORITY_OF_RANK, estimated_start, queue_position
from app.graphql.context import Info
from app.graphql.types.common import ConnectionStatus, PageInfo, RunMode, RunPriority, RunStatus
from app.graphql.types.environment import UserType
from app.graphql.types.group import MachineGroupType
from app.graphql.types.machine import MachineType


async def _group(info: Info, group_id: str | None) -> MachineGroupType | None:
    group = await info.context.loaders.groups.load(group_id) if group_id else None
    return MachineGroupType(row=group) if group is not None else None


async def _machine(info: Info, machine_id: str | None) -> MachineType | None:
    machine = await info.context.loaders.machines.load(machine_id) if machine_id else None
    return MachineType(row=machine) if machine is not None else None


async def _user(info: Info, user_id: str) -> UserType:
    user = await info.context.loaders.users.load(user_id)
    assert user is not None  # a foreign key guarantees it
    return UserType(row=user)


def _moment(value: datetime | None) -> datetime | None:
    return as_utc(value) if value is not None else None


@strawberry.type(name="Connection")
class ConnectionType:
    row: strawberry.Private[models.Connection]

    @strawberry.field
    def id(self) -> strawberry.ID:
        return strawberry.ID(self.row.id)

    @strawberry.field
    def name(self) -> str:
        return self.row.name

    @strawberry.field
    async def owner(self, info: Info) -> UserType:
        return await _user(info, self.row.owner_id)

    @strawberry.field(description="Exactly one of machine / group is set.")
    async def machine(self, info: Info) -> MachineType | None:
        return await _machine(info, self.row.machine_id)

    @strawberry.field
    async def group(self, info: Info) -> MachineGroupType | None:
        return await _group(info, self.row.group_id)

    @strawberry.field(description="The password is write-only and never returned.")
    def username(self) -> str:
        return self.row.username

    @strawberry.field
    def status(self) -> ConnectionStatus:
        return ConnectionStatus(self.row.status)

    @strawberry.field
    def broken_reason(self) -> str | None:
        return self.row.broken_reason


@strawberry.type(name="Run")
class RunType:
    row: strawberry.Private[models.Run]

    @strawberry.field
    def id(self) -> strawberry.ID:
        return strawberry.ID(self.row.id)

    @strawberry.field
    def flow_name(self) -> str:
        return self.row.flow_name

    @strawberry.field
    def inputs(self) -> JSON | None:
        return cast(JSON | None, self.row.inputs)

    @strawberry.field
    def output(self) -> JSON | None:
        return cast(JSON | None, self.row.output)

    @strawberry.field
    def status(self) -> RunStatus:
        return RunStatus(self.row.status)

    @strawberry.field
    def priority(self) -> RunPriority:
        return PRIORITY_OF_RANK[self.row.priority]

    @strawberry.field
    def run_mode(self) -> RunMode:
        return RunMode(self.row.run_mode)

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
        async with info.context.db.read() as session:
            connection = await session.get(models.Connection, self.row.connection_id)
        return ConnectionType(row=connection) if connection is not None else None

    @strawberry.field
    async def started_by(self, info: Info) -> UserType:
        return await _user(info, self.row.started_by_id)

    @strawberry.field(description="1-based while QUEUED, else null.")
    async def queue_position(self, info: Info) -> int | None:
        async with info.context.db.read() as session:
            return await queue_position(session, self.row)

    @strawberry.field(
        description="While QUEUED: when it should start, from recent run durations; "
        "null when unknown (no finished runs to estimate from yet)."
    )
    async def estimated_start_at(self, info: Info) -> datetime | None:
        now = info.context.app.services.clock.now()
        async with info.context.db.read() as session:
            position = await queue_position(session, self.row)
            return await estimated_start(session, self.row, position, now)

    @strawberry.field
    def enqueued_at(self) -> datetime:
        return as_utc(self.row.enqueued_at)

    @strawberry.field
    def started_at(self) -> datetime | None:
        return _moment(self.row.started_at)

    @strawberry.field
    def finished_at(self) -> datetime | None:
        return _moment(self.row.finished_at)

    @strawberry.field
    def failure_reason(self) -> str | None:
        return self.row.failure_reason


@strawberry.type(name="RunEdge")
class RunEdge:
    node: RunType
    cursor: str


@strawberry.type(name="RunConnection")
class RunConnection:
    edges: list[RunEdge]
    page_info: PageInfo
    total_count: int
