"""Group passwords: Argon2id hashes, the guessing throttle and the regeneration throttle."""

from __future__ import annotations

import asyncio
import math
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import bindparam, delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from app.db.models import AuditEntry, MachineGroup, PasswordFailure
from app.domain.audit import AuditKind, AuditOutcome, audit
from app.domain.caller import Caller
from app.domain.clock import as_utc
from app.domain.enums import ErrorCode, RecordKind
from app.domain.errors import DomainError, WrongGroupPassword, validation

MIN_PASSWORD_LENGTH = 12
MAX_PASSWORD_LENGTH = 1024
MAX_WRONG_TRIES = 5
GUESS_WINDOW = timedelta(minutes=15)
THROTTLE = timedelta(minutes=15)
# Each regeneration hashes (about 0.1 s of CPU and 64 MiB): a group's password may be
# regenerated this many times per window, which leaves room for a retry or two.
MAX_REGENERATIONS = 3
REGENERATION_WINDOW = timedelta(minutes=1)
GROUP_KIND = RecordKind.MACHINE_GROUP.value

_hasher = PasswordHasher()  # Argon2id with argon2-cffi's RFC 9106 low-memory profile


async def hash_password(password: str) -> str:
    """The Argon2id hash, computed off the event loop."""
    return await asyncio.to_thread(_hasher.hash, password)


async def password_matches(password_hash: str, password: str) -> bool:
    """Whether the password is the one hashed, checked off the event loop."""

    def verify() -> bool:
        try:
            return _hasher.verify(password_hash, password)
        except (VerificationError, InvalidHashError):
            return False

    return await asyncio.to_thread(verify)


@dataclass(frozen=True)
class Proof:
    """A password checked against a group's hash before the write transaction, so that
    no writer waits behind Argon2id; the write uses it only if the hash is still the one
    checked (`against`, None when the group had no password yet)."""

    against: str | None
    matches: bool = False
    new_hash: str | None = None  # the password's own hash, for a group without one


async def prove(password_hash: str | None, password: str) -> Proof:
    """Check the password against the hash, or hash it when there is none (and it is a
    valid first password: a refused one costs no hash)."""
    if password_hash is not None:
        return Proof(password_hash, matches=await password_matches(password_hash, password))
    if MIN_PASSWORD_LENGTH <= len(password) <= MAX_PASSWORD_LENGTH:
        return Proof(None, new_hash=await hash_password(password))
    return Proof(None)


def generate_password() -> str:
    """A strong random group password."""
    return secrets.token_urlsafe(24)


async def new_password() -> tuple[str, str]:
    """A strong random group password and its hash (computed off the event loop)."""
    password = generate_password()
    return password, await hash_password(password)


def check_new_password(password: str) -> None:
    """A first group password must be 12 characters or more."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise validation(
            f"the group password must be at least {MIN_PASSWORD_LENGTH} characters", "password"
        )
    if len(password) > MAX_PASSWORD_LENGTH:
        raise validation(
            f"the group password must be at most {MAX_PASSWORD_LENGTH} characters", "password"
        )


def check_not_throttled(group: MachineGroup, now: datetime) -> None:
    """TOO_MANY_ATTEMPTS, saying when passwords are accepted again, while the group is
    throttled after too many wrong ones."""
    if group.throttled_until is not None and now < as_utc(group.throttled_until):
        until = as_utc(group.throttled_until)
        wait = math.ceil((until - now).total_seconds() / 60)
        raise DomainError(
            ErrorCode.TOO_MANY_ATTEMPTS,
            f"{MAX_WRONG_TRIES} wrong group passwords within"
            f" {int(GUESS_WINDOW.total_seconds() // 60)} minutes: passwords are accepted again"
            f" in {wait} min (at {until.isoformat(timespec='seconds')}); a co-owner who"
            " regenerates the password lifts this at once",
            "password",
        )


async def admit(
    session: AsyncSession, caller: Caller, group: MachineGroup, password: str, proof: Proof
) -> None:
    """Let a machine in with the group password; the first one sets it.

    A wrong password is recorded (and kept although the mutation fails); the fifth within
    the window throttles the group, and while throttled even the right one is refused.
    `proof` was made outside the transaction; a hash changed since is checked here.
    """
    now = caller.clock.now()
    fresh = proof.against == group.password_hash
    if group.password_hash is None:
        check_new_password(password)
        new_hash = proof.new_hash if fresh else None
        group.password_hash = new_hash or await hash_password(password)
        audit(
            session,
            caller,
            AuditKind.GROUP_PASSWORD_SET,
            record_kind=GROUP_KIND,
            record_id=group.id,
        )
        return
    check_not_throttled(group, now)
    if proof.matches if fresh else await password_matches(group.password_hash, password):
        return
    session.add(PasswordFailure(group_id=group.id, at=now))
    await session.flush()
    recent = await session.scalar(
        select(func.count()).where(
            col(PasswordFailure.group_id) == group.id, col(PasswordFailure.at) > now - GUESS_WINDOW
        )
    )
    if (recent or 0) >= MAX_WRONG_TRIES:
        group.throttled_until = now + THROTTLE
    audit(
        session,
        caller,
        AuditKind.WRONG_GROUP_PASSWORD,
        record_kind=GROUP_KIND,
        record_id=group.id,
        outcome=AuditOutcome.FAILURE,
        detail={"recentWrongTries": recent or 0},
    )
    if group.throttled_until is not None and as_utc(group.throttled_until) > now:
        audit(
            session,
            caller,
            AuditKind.GROUP_THROTTLED,
            record_kind=GROUP_KIND,
            record_id=group.id,
            detail={"until": group.throttled_until.isoformat()},
        )
    raise WrongGroupPassword()


# The audit trail records every regeneration in the transaction that makes it, so it is
# the throttle's memory, the same for every server sharing the database.
_REGENERATIONS = (
    select(col(AuditEntry.at))
    .where(
        col(AuditEntry.record_id) == bindparam("group_id"),
        col(AuditEntry.kind) == AuditKind.GROUP_PASSWORD_REGENERATED.value,
        col(AuditEntry.at) > bindparam("since"),
    )
    .order_by(col(AuditEntry.at))
    .limit(MAX_REGENERATIONS)
)


async def check_regeneration_allowed(
    session: AsyncSession, group: MachineGroup, now: datetime
) -> None:
    """TOO_MANY_ATTEMPTS, saying when it is allowed again, once the group's password was
    regenerated MAX_REGENERATIONS times within REGENERATION_WINDOW."""
    since = now - REGENERATION_WINDOW
    recent = list(await session.scalars(_REGENERATIONS, {"group_id": group.id, "since": since}))
    if len(recent) < MAX_REGENERATIONS:
        return
    allowed_at = as_utc(recent[0]) + REGENERATION_WINDOW
    wait = math.ceil((allowed_at - now).total_seconds())
    raise DomainError(
        ErrorCode.TOO_MANY_ATTEMPTS,
        f"the group password was regenerated {MAX_REGENERATIONS} times within"
        f" {int(REGENERATION_WINDOW.total_seconds())} seconds: try again in {wait} s"
        f" (at {allowed_at.isoformat(timespec='seconds')})",
        "id",
    )


async def replace(session: AsyncSession, group: MachineGroup, password_hash: str) -> None:
    """Store a regenerated password's hash: the old password stops working, and any
    guessing throttle is lifted."""
    group.password_hash = password_hash
    group.throttled_until = None
    await session.execute(delete(PasswordFailure).where(col(PasswordFailure.group_id) == group.id))
