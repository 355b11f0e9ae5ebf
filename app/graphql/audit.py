"""The audit trail: `auditLog` for SYSTEM_ADMINISTRATORs."""

from __future__ import annotations

from datetime import datetime
from typing import cast

import strawberry
from strawberry.scalars import JSON

from app.db import models
from app.domain import audit
from app.domain.audit import AuditKind, AuditOutcome
from app.domain.clock import as_utc
from app.graphql.context import Info
from app.graphql.paging import to_connection
from app.graphql.types.common import TOTAL_COUNT, TOTAL_COUNT_IS_EXACT, PageInfo
from app.graphql.types.environment import UserType

strawberry.enum(AuditKind)
strawberry.enum(AuditOutcome)


async def _user(info: Info, user_id: str | None) -> UserType | None:
    user = await info.context.loaders.users.load(user_id) if user_id else None
    return UserType.of(user) if user is not None else None


@strawberry.type(name="AuditEntry")
class AuditEntryType:
    row: strawberry.Private[models.AuditEntry]

    @strawberry.field
    def id(self) -> strawberry.ID:
        return strawberry.ID(str(self.row.id))

    @strawberry.field
    def at(self) -> datetime:
        return as_utc(self.row.at)

    @strawberry.field(
        description="Who did it; null for the service itself (policy reloads) and for the"
        ' command line (its entries\' detail says `"via": "command line"`).'
    )
    async def actor(self, info: Info) -> UserType | None:
        return await _user(info, self.row.actor_id)

    @strawberry.field
    def kind(self) -> AuditKind:
        return AuditKind(self.row.kind)

    @strawberry.field(description="machine, machine_group or environment.")
    def record_kind(self) -> str | None:
        return self.row.record_kind

    @strawberry.field
    def record_id(self) -> strawberry.ID | None:
        return strawberry.ID(self.row.record_id) if self.row.record_id else None

    @strawberry.field(description="The user a grant, role or deactivation is about.")
    async def subject_user(self, info: Info) -> UserType | None:
        return await _user(info, self.row.subject_user_id)

    @strawberry.field
    def outcome(self) -> AuditOutcome:
        return AuditOutcome(self.row.outcome)

    @strawberry.field
    def detail(self) -> JSON | None:
        return cast(JSON | None, self.row.detail)


@strawberry.type
class AuditEntryEdge:
    node: AuditEntryType
    cursor: str


@strawberry.type
class AuditEntryConnection:
    edges: list[AuditEntryEdge]
    page_info: PageInfo
    total_count: int = strawberry.field(description=TOTAL_COUNT)
    total_count_is_exact: bool = strawberry.field(description=TOTAL_COUNT_IS_EXACT)


@strawberry.type
class AuditQuery:
    @strawberry.field(
        description="Security events, newest first (SYSTEM_ADMINISTRATORs of the default"
        " environment). Filter by record, by user (actor or subject) and by kind."
    )
    async def audit_log(
        self,
        info: Info,
        record_id: strawberry.ID | None = None,
        user_id: strawberry.ID | None = None,
        kind: list[AuditKind] | None = None,
        first: int | None = 50,
        after: str | None = None,
    ) -> AuditEntryConnection:
        caller = info.context.caller
        async with info.context.db.read() as session:
            page = await audit.audit_log(
                session,
                caller,
                record_id=record_id,
                user_id=user_id,
                kinds=kind,
                first=first,
                after=after,
            )
        return to_connection(
            page, lambda row: AuditEntryType(row=row), AuditEntryEdge, AuditEntryConnection
        )
