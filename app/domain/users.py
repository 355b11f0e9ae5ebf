"""Users and their security roles; administered by the default environment's admins."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from app.db.models import RoleAssignment, User
from app.domain.audit import AuditKind, audit
from app.domain.caller import Caller
from app.domain.enums import SecurityRole
from app.domain.environments import (
    require_environment_administrator,
    require_user_administrator,
    resolve_environment,
)
from app.domain.errors import conflict, not_found, validation
from app.domain.events import Event, EventKind, emit, user_topic
from app.domain.validation import clean_name, name_key


async def user_by_name(session: AsyncSession, name: str) -> User | None:
    """The user with this name, compared case-insensitively."""
    return await session.scalar(select(User).where(col(User.name_key) == name_key(name.strip())))


async def get_user(session: AsyncSession, user_id: str, field: str = "userId") -> User:
    """The user with this id, or NOT_FOUND."""
    user = await session.get(User, user_id)
    if user is None:
        raise not_found("user", field)
    return user


async def add_user(session: AsyncSession, name: str, *, premium: bool, now: datetime) -> User:
    """Insert a user after checking the name; used by the API and the command line."""
    clean = clean_name(name)
    if await user_by_name(session, clean) is not None:
        raise conflict(f"a user named {clean!r} exists already", "name")
    user = User(name=clean, name_key=name_key(clean), premium=premium, created_at=now)
    session.add(user)
    await session.flush()
    return user


async def create_user(session: AsyncSession, caller: Caller, *, name: str, premium: bool) -> User:
    """A new user, by an administrator."""
    await require_user_administrator(session, caller)
    return await add_user(session, name, premium=premium, now=caller.clock.now())


async def set_premium(session: AsyncSession, caller: Caller, user_id: str, premium: bool) -> User:
    """Give or take the premium licence."""
    await require_user_administrator(session, caller)
    user = await get_user(session, user_id)
    user.premium = premium
    return user


async def deactivate(session: AsyncSession, caller: Caller, user_id: str) -> User:
    """Deactivate a user: their tokens stop working at once; their grants stay listed."""
    await require_user_administrator(session, caller)
    user = await get_user(session, user_id)
    if user.id == caller.viewer.id:
        raise validation("you cannot deactivate yourself", "userId")
    user.deactivated = True
    audit(session, caller, AuditKind.USER_DEACTIVATED, subject_user_id=user.id)
    emit(session, Event(EventKind.ACCESS_CHANGED, (user_topic(user.id),)))
    return user


async def assign_role(
    session: AsyncSession,
    caller: Caller,
    user_id: str,
    role: SecurityRole,
    environment_id: str | None,
) -> User:
    """Give a user a security role in an environment (holding it already is fine)."""
    environment = await resolve_environment(session, environment_id)
    require_environment_administrator(caller, environment)
    user = await get_user(session, user_id)
    held = await session.get(RoleAssignment, (user.id, environment.id, role.value))
    if held is None:
        session.add(RoleAssignment(user_id=user.id, environment_id=environment.id, role=role.value))
        audit(
            session,
            caller,
            AuditKind.ROLE_ASSIGNED,
            record_kind="environment",
            record_id=environment.id,
            subject_user_id=user.id,
            detail={"role": role.value},
        )
    return user


async def remove_role(
    session: AsyncSession,
    caller: Caller,
    user_id: str,
    role: SecurityRole,
    environment_id: str | None,
) -> User:
    """Take a security role away; the environment's last administrator stays one."""
    environment = await resolve_environment(session, environment_id)
    require_environment_administrator(caller, environment)
    user = await get_user(session, user_id)
    if role is SecurityRole.SYSTEM_ADMINISTRATOR:
        administrators = await session.scalar(
            select(func.count()).where(
                col(RoleAssignment.environment_id) == environment.id,
                col(RoleAssignment.role) == role.value,
                col(RoleAssignment.user_id) != user.id,
            )
        )
        if not administrators:
            raise conflict("an environment keeps at least one system administrator", "role")
    removed = await session.execute(
        delete(RoleAssignment).where(
            col(RoleAssignment.user_id) == user.id,
            col(RoleAssignment.environment_id) == environment.id,
            col(RoleAssignment.role) == role.value,
        )
    )
    if removed.rowcount:  # type: ignore[attr-defined]
        audit(
            session,
            caller,
            AuditKind.ROLE_REMOVED,
            record_kind="environment",
            record_id=environment.id,
            subject_user_id=user.id,
            detail={"role": role.value},
        )
    emit(session, Event(EventKind.ACCESS_CHANGED, (user_topic(user.id),)))
    return user
