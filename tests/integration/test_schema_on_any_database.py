"""The migrations on the test database (SQLite, or PostgreSQL in CI's second run)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
from sqlmodel import SQLModel

import app.db.models  # noqa: F401  (registers every table on SQLModel.metadata)
from app.db.migrate import upgrade
from app.db.models import Run, User


async def _differences(url: str) -> list[Any]:
    engine = create_async_engine(url)

    def compare(connection: Connection) -> list[Any]:
        return list(compare_metadata(MigrationContext.configure(connection), SQLModel.metadata))

    try:
        async with engine.connect() as connection:
            return await connection.run_sync(compare)
    finally:
        await engine.dispose()


def test_the_migrations_build_exactly_the_models_schema(database_url: str) -> None:
    upgrade(database_url)
    upgrade(database_url)  # a second run finds nothing to do
    assert asyncio.run(_differences(database_url)) == []


async def _insert_runs(url: str, statuses: list[str], *, first: bool = True) -> None:
    """Insert (the first time, with their user `u1`) runs on machine `m1` with these
    statuses, one commit each."""
    engine = create_async_engine(url)
    now = datetime.now(UTC)
    try:
        async with AsyncSession(engine) as session:
            if first:
                session.add(User(id="u1", name="u1", name_key="u1", created_at=now))
                await session.commit()
            for status in statuses:
                session.add(
                    Run(
                        flow_name="f",
                        status=status,
                        machine_id="m1",
                        started_by_id="u1",
                        enqueued_at=now,
                    )
                )
                await session.commit()
    finally:
        await engine.dispose()


def test_the_database_refuses_a_machine_a_second_running_run(database_url: str) -> None:
    upgrade(database_url)
    # Finished runs on the machine are history and may be many; a running one is alone.
    asyncio.run(_insert_runs(database_url, ["SUCCEEDED", "FAILED", "RUNNING"]))
    with pytest.raises(IntegrityError):
        asyncio.run(_insert_runs(database_url, ["RUNNING"], first=False))
