"""First start: environment `default` and user `admin`, its SYSTEM_ADMINISTRATOR."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from app.db.models import Environment, RoleAssignment, User
from app.domain.enums import SecurityRole

DEFAULT_ENVIRONMENT = "default"
ADMIN_USER = "admin"


async def default_environment(session: AsyncSession) -> Environment | None:
    """The bootstrapped environment."""
    return await session.scalar(
        select(Environment).where(col(Environment.name_key) == DEFAULT_ENVIRONMENT)
    )


async def bootstrap(session: AsyncSession, region: str, now: datetime) -> bool:
    """Create the default environment and the admin user once; True when it did."""
    if await default_environment(session) is not None:
        return False
    environment = Environment(
        name=DEFAULT_ENVIRONMENT, name_key=DEFAULT_ENVIRONMENT, region=region, created_at=now
    )
    admin = await session.scalar(select(User).where(col(User.name_key) == ADMIN_USER))
    if admin is None:
        admin = User(name=ADMIN_USER, name_key=ADMIN_USER, created_at=now)
        session.add(admin)
    session.add(environment)
    await session.flush()
    session.add(
        RoleAssignment(
            user_id=admin.id,
            environment_id=environment.id,
            role=SecurityRole.SYSTEM_ADMINISTRATOR.value,
        )
    )
    return True
