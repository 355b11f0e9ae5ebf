"""The audit trail of security events, written in the transaction of the change itself."""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import Any

from sqlalchemy import ColumnElement, or_, true
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from app.db.models import AuditEntry
from app.domain.caller import Caller
from app.domain.environments import require_user_administrator
from app.domain.errors import validation
from app.domain.pages import Page, page_newest_first


def _entry_id(raw: str) -> int:
    try:
        return int(raw)
    except ValueError:
        raise validation("the cursor is not valid", "after") from None


class AuditKind(Enum):
    GRANT_SHARED = "GRANT_SHARED"
    GRANT_REVOKED = "GRANT_REVOKED"
    ROLE_ASSIGNED = "ROLE_ASSIGNED"
    ROLE_REMOVED = "ROLE_REMOVED"
    GROUP_PASSWORD_SET = "GROUP_PASSWORD_SET"
    GROUP_PASSWORD_REGENERATED = "GROUP_PASSWORD_REGENERATED"
    WRONG_GROUP_PASSWORD = "WRONG_GROUP_PASSWORD"
    GROUP_THROTTLED = "GROUP_THROTTLED"
    USER_CREATED = "USER_CREATED"
    USER_PREMIUM_CHANGED = "USER_PREMIUM_CHANGED"
    USER_DEACTIVATED = "USER_DEACTIVATED"
    MACHINE_REGISTERED = "MACHINE_REGISTERED"
    MACHINE_DELETED = "MACHINE_DELETED"
    GROUP_DELETED = "GROUP_DELETED"
    POLICY_APPLIED = "POLICY_APPLIED"
    POLICY_REJECTED = "POLICY_REJECTED"


class AuditOutcome(Enum):
    SUCCESS = "SUCCESS"
    FAILURE = "FAILURE"


def record(
    session: AsyncSession,
    *,
    at: datetime,
    actor_id: str | None,
    kind: AuditKind,
    record_kind: str | None = None,
    record_id: str | None = None,
    subject_user_id: str | None = None,
    outcome: AuditOutcome = AuditOutcome.SUCCESS,
    detail: dict[str, Any] | None = None,
) -> None:
    """Add an entry to the session: it commits, or rolls back, with the change."""
    session.add(
        AuditEntry(
            at=at,
            actor_id=actor_id,
            kind=kind.value,
            record_kind=record_kind,
            record_id=record_id,
            subject_user_id=subject_user_id,
            outcome=outcome.value,
            detail=detail,
        )
    )


def audit(
    session: AsyncSession,
    caller: Caller,
    kind: AuditKind,
    *,
    record_kind: str | None = None,
    record_id: str | None = None,
    subject_user_id: str | None = None,
    outcome: AuditOutcome = AuditOutcome.SUCCESS,
    detail: dict[str, Any] | None = None,
) -> None:
    """Record an event done by the caller, now (the command line's as done by no user,
    `via` it)."""
    if caller.via is not None:
        detail = {**(detail or {}), "via": caller.via}
    record(
        session,
        at=caller.clock.now(),
        actor_id=caller.actor_id,
        kind=kind,
        record_kind=record_kind,
        record_id=record_id,
        subject_user_id=subject_user_id,
        outcome=outcome,
        detail=detail,
    )


async def audit_log(
    session: AsyncSession,
    caller: Caller,
    *,
    record_id: str | None,
    user_id: str | None,
    kinds: list[AuditKind] | None,
    first: int | None,
    after: str | None,
) -> Page[AuditEntry]:
    """The trail, newest first, for the default environment's administrators."""
    await require_user_administrator(session, caller, "read the audit trail")
    arms = _trail_arms(record_id, user_id, kinds)
    return await page_newest_first(
        session, AuditEntry, "at", arms, first, after, parse_id=_entry_id
    )


def _trail_arms(
    record_id: str | None, user_id: str | None, kinds: list[AuditKind] | None
) -> list[ColumnElement[bool]]:
    """The filter as disjoint parts, each read newest first along an index that orders it
    (migration 0009): by record, else by actor and by subject, else per kind, else all."""
    by_kind = [col(AuditEntry.kind) == kind.value for kind in dict.fromkeys(kinds or [])]
    if record_id is None and user_id is None:
        return by_kind or [true()]
    kind_filter = or_(*by_kind) if by_kind else true()
    if record_id is not None:
        arm = (col(AuditEntry.record_id) == record_id) & kind_filter
        if user_id is not None:
            arm = arm & or_(
                col(AuditEntry.actor_id) == user_id, col(AuditEntry.subject_user_id) == user_id
            )
        return [arm]
    acted = col(AuditEntry.actor_id) == user_id
    subject = (col(AuditEntry.subject_user_id) == user_id) & or_(
        col(AuditEntry.actor_id).is_(None), ~acted
    )
    return [acted & kind_filter, subject & kind_filter]
