"""Users and their security roles; administered by the default environment's admins."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from app.db.models import Environment, RoleAssignment, User
from app.domain.audit import AuditKind, audit
from app.domain.caller import Caller, Services, Viewer
from app.domain.enums import SecurityRole
from app.domain.environments import (
    require_environment_administrator,
    require_user_administrator,
    resolve_environment,
)
from app.domain.errors import conflict, not_found, validation
from app.domain.events import Event, EventKind, emit, user_topic
from app.domain.validation import clean_name, name_key


def reads_roles_of(viewer: Viewer | None, user_id: str, default_environment_id: str) -> bool:
    """A user's security roles are read by that user and by those who administer users;
    to anyone else they would say who to target, so they read as none."""
    return viewer is not None and (
        viewer.id == user_id or viewer.administers(default_environment_id)
    )


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
    """Insert a user after checking the name."""
    clean = clean_name(name)
    existing = await user_by_name(session, clean)
    if existing is not None:
        raise conflict(f"a user named {existing.name!r} exists already", "name")
    user = User(name=clean, name_key=name_key(clean), premium=premium, created_at=now)
    session.add(user)
    await session.flush()
    return user


COMMAND_LINE = "command line"


async def operator(session: AsyncSession, services: Services) -> Caller:
    """Whoever runs the command line on the server's database.

    They hold the database and its key already, so they administer users and roles in
    every environment, through the same rules as an administrator of the API; the audit
    trail records their changes with no actor, `via` the command line.
    """
    environments = await session.scalars(select(col(Environment.id)))
    administers = frozenset({SecurityRole.SYSTEM_ADMINISTRATOR})
    user = User(id="", name=COMMAND_LINE, name_key=COMMAND_LINE)
    viewer = Viewer(user=user, roles={environment: administers for environment in environments})
    return Caller(viewer=viewer, services=services, via=COMMAND_LINE)


async def create_user(session: AsyncSession, caller: Caller, *, name: str, premium: bool) -> User:
    """A new user, by an administrator."""
    await require_user_administrator(session, caller, "create users")
    user = await add_user(session, name, premium=premium, now=caller.clock.now())
    audit(
        session,
        caller,
        AuditKind.USER_CREATED,
        subject_user_id=user.id,
        detail={"premium": premium},
    )
    return user


async def set_premium(session: AsyncSession, caller: Caller, user_id: str, premium: bool) -> User:
    """Give or take the premium licence."""
    await require_user_administrator(session, caller, "change users' licences")
    user = await get_user(session, user_id)
    if user.premium != premium:
        user.premium = premium
        audit(
            session,
            caller,
            AuditKind.USER_PREMIUM_CHANGED,
            subject_user_id=user.id,
            detail={"premium": premium},
        )
    return user


async def users_and_roles(
    session: AsyncSession, caller: Caller
) -> list[tuple[User, dict[str, list[SecurityRole]]]]:
    """Every user by name, with their security roles per environment name."""
    await require_user_administrator(session, caller, "list users")
    rows = await session.execute(
        select(User, col(Environment.name), col(RoleAssignment.role))
        .outerjoin(RoleAssignment, col(RoleAssignment.user_id) == col(User.id))
        .outerjoin(Environment, col(Environment.id) == col(RoleAssignment.environment_id))
        .order_by(col(User.name_key), col(Environment.name_key), col(RoleAssignment.role))
    )
    found: dict[str, tuple[User, defaultdict[str, list[SecurityRole]]]] = {}
    for user, environment, role in rows:
        _, roles = found.setdefault(user.id, (user, defaultdict(list)))
        if environment is not None and role is not None:
            roles[environment].append(SecurityRole(role))
    return [(user, dict(roles)) for user, roles in found.values()]


async def deactivate(session: AsyncSession, caller: Caller, user_id: str) -> User:
    """Deactivate a user: their tokens stop working at once; their grants stay listed."""
    await require_user_administrator(session, caller, "deactivate users")
    user = await get_user(session, user_id)
    if user.id == caller.viewer.id:
        raise validation("you cannot deactivate yourself", "userId")
    administered = await session.scalars(
        select(col(RoleAssignment.environment_id)).where(
            col(RoleAssignment.user_id) == user.id,
            col(RoleAssignment.role) == SecurityRole.SYSTEM_ADMINISTRATOR.value,
        )
    )
    await _keep_an_administrator(session, user.id, list(administered), "userId")
    user.deactivated = True
    audit(session, caller, AuditKind.USER_DEACTIVATED, subject_user_id=user.id)
    emit(session, Event(EventKind.ACCESS_CHANGED, (user_topic(user.id),)))
    return user


async def _keep_an_administrator(
    session: AsyncSession, leaving_id: str, environment_ids: list[str], field: str
) -> None:
    """CONFLICT unless each environment keeps an active SYSTEM_ADMINISTRATOR besides the
    one leaving: with none, nobody could administer it through the API again."""
    if not environment_ids:
        return
    # Two administrators deactivating each other at once would each see the other stay:
    # locking the environments makes the second look after the first has committed.
    await session.execute(
        select(col(Environment.id))
        .where(col(Environment.id).in_(environment_ids))
        .order_by(col(Environment.id))
        .with_for_update()
    )
    kept = await session.scalars(
        select(col(RoleAssignment.environment_id))
        .join(User, col(User.id) == col(RoleAssignment.user_id))
        .where(
            col(RoleAssignment.environment_id).in_(environment_ids),
            col(RoleAssignment.role) == SecurityRole.SYSTEM_ADMINISTRATOR.value,
            col(RoleAssignment.user_id) != leaving_id,
            col(User.deactivated).is_(False),
        )
    )
    orphaned = set(environment_ids) - set(kept)
    if orphaned:
        names = await session.scalars(
            select(col(Environment.name))
            .where(col(Environment.id).in_(orphaned))
            .order_by(col(Environment.name_key))
        )
        raise conflict(
            "an environment keeps at least one active system administrator; this would"
            f" leave none in {', '.join(names)}: give the role to someone else first",
            field,
        )


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
        await _keep_an_administrator(session, user.id, [environment.id], "role")
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
