"""Environments: tenant spaces with a region."""

from __future__ import annotations

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from app.db.bootstrap import default_environment
from app.db.models import Environment, RoleAssignment
from app.domain.caller import Caller, Viewer
from app.domain.enums import SecurityRole
from app.domain.errors import conflict, not_found, permission_denied, validation
from app.domain.validation import clean_name, name_key


async def resolve_environment(session: AsyncSession, environment_id: str | None) -> Environment:
    """The environment named by an optional `environmentId` argument (default: `default`)."""
    environment = (
        await default_environment(session)
        if environment_id is None
        else await session.get(Environment, environment_id)
    )
    if environment is None:
        raise not_found("environment", "environmentId")
    return environment


async def environment_named(session: AsyncSession, name: str | None) -> Environment | None:
    """The environment a person names, by name (compared case-insensitively) or by id;
    `default` when none is named. None when there is no such environment."""
    if name is None:
        return await default_environment(session)
    found: Environment | None = await session.scalar(
        select(Environment).where(
            or_(col(Environment.name_key) == name_key(name.strip()), col(Environment.id) == name)
        )
    )
    return found


async def environment_names(session: AsyncSession) -> list[str]:
    """Every environment's name, in order."""
    return list(
        await session.scalars(select(col(Environment.name)).order_by(col(Environment.name_key)))
    )


async def environment_id_of(
    session: AsyncSession, environment_id: str | None, default_id: str
) -> str:
    """The id an optional `environmentId` argument names (the default's needs no query)."""
    if environment_id is None:
        return default_id
    return (await resolve_environment(session, environment_id)).id


async def environments_of(session: AsyncSession, viewer: Viewer) -> list[Environment]:
    """The environments where the viewer holds any security role, by name."""
    if not viewer.roles:
        return []
    result = await session.scalars(
        select(Environment)
        .where(col(Environment.id).in_(list(viewer.roles)))
        .order_by(col(Environment.name_key))
    )
    return list(result)


async def require_user_administrator(
    session: AsyncSession, caller: Caller, what: str
) -> Environment:
    """Users and environments are administered by the SYSTEM_ADMINISTRATORs of `default`;
    `what` they alone may do completes the refusal's sentence."""
    environment = await resolve_environment(session, None)
    if not caller.viewer.administers(environment.id):
        raise permission_denied(f"only system administrators of the default environment may {what}")
    return environment


async def create_environment(
    session: AsyncSession, caller: Caller, *, name: str, region: str
) -> Environment:
    """A new environment; its creator becomes its SYSTEM_ADMINISTRATOR."""
    await require_user_administrator(session, caller, "create environments")
    clean = clean_name(name)
    region_name = region.strip()  # kept as typed; compared case-insensitively
    if not region_name or len(region_name) > 50:
        raise validation("region must be 1-50 characters", "region")
    key = name_key(clean)
    existing = await session.scalar(
        select(col(Environment.name)).where(col(Environment.name_key) == key)
    )
    if existing is not None:
        raise conflict(f"an environment named {existing!r} exists already", "name")
    environment = Environment(
        name=clean, name_key=key, region=region_name, created_at=caller.clock.now()
    )
    session.add(environment)
    await session.flush()
    session.add(
        RoleAssignment(
            user_id=caller.viewer.id,
            environment_id=environment.id,
            role=SecurityRole.SYSTEM_ADMINISTRATOR.value,
        )
    )
    return environment


def require_environment_administrator(caller: Caller, environment: Environment) -> None:
    """Roles in an environment are assigned by its SYSTEM_ADMINISTRATORs."""
    if not caller.viewer.administers(environment.id):
        raise permission_denied(
            f"only system administrators of environment {environment.name!r} may assign roles"
        )
