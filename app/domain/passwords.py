"""Group passwords: Argon2id hashes and the guessing throttle."""

from __future__ import annotations

import asyncio
import secrets
from datetime import timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from app.db.models import MachineGroup, PasswordFailure
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


def generate_password() -> str:
    """A strong random group password."""
    return secrets.token_urlsafe(24)


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


async def admit(session: AsyncSession, caller: Caller, group: MachineGroup, password: str) -> None:
    """Let a machine in with the group password; the first one sets it.

    A wrong password is recorded (and kept although the mutation fails); the fifth within
    the window throttles the group, and while throttled even the right one is refused.
    """
    now = caller.clock.now()
    if group.password_hash is None:
        check_new_password(password)
        group.password_hash = await hash_password(password)
        audit(
            session,
            caller,
            AuditKind.GROUP_PASSWORD_SET,
            record_kind=GROUP_KIND,
            record_id=group.id,
        )
        return
    if group.throttled_until is not None and now < as_utc(group.throttled_until):
        raise DomainError(
            ErrorCode.TOO_MANY_ATTEMPTS,
            "too many wrong group passwords: try again later or regenerate the password",
            "password",
        )
    if await password_matches(group.password_hash, password):
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


async def regenerate(session: AsyncSession, group: MachineGroup) -> str:
    """Replace the password with a random one (returned once) and lift any throttle."""
    password = generate_password()
    group.password_hash = await hash_password(password)
    group.throttled_until = None
    await session.execute(delete(PasswordFailure).where(col(PasswordFailure.group_id) == group.id))
    return password
