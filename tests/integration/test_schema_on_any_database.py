"""The migrations on the test database (SQLite, or PostgreSQL in CI's second run)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
from sqlmodel import SQLModel

import app.db.models  # noqa: F401  (registers every table on SQLModel.metadata)
from app.db.migrate import alembic_config, upgrade
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


async def _execute(url: str, *statements: str) -> list[Any]:
    """Run statements in one transaction; the rows of the last."""
    engine = create_async_engine(url)
    try:
        async with engine.begin() as connection:
            for statement in statements:
                result = await connection.execute(text(statement))
            return list(result.all()) if result.returns_rows else []
    finally:
        await engine.dispose()


def test_connection_names_become_unique_per_owner_renaming_later_duplicates(
    database_url: str,
) -> None:
    command.upgrade(alembic_config(database_url), "0006")
    connections = [
        ("c1", "u1", "Nightly", "10:00"),
        ("c2", "u1", "nightly", "11:00"),
        ("c3", "u1", "NIGHTLY", "12:00"),
        ("c4", "u1", "Nightly (2)", "13:00"),  # taken: the duplicates get (3) and (4)
        ("c5", "u2", "Nightly", "10:00"),  # another owner's: kept
    ]
    asyncio.run(
        _execute(
            database_url,
            "INSERT INTO users (id, name, name_key, premium, deactivated, created_at) VALUES"
            " ('u1', 'ann', 'ann', false, false, '2026-11-27 09:00:00+00'),"
            " ('u2', 'bob', 'bob', false, false, '2026-11-27 09:00:00+00')",
            "INSERT INTO connections (id, owner_id, name, username, password_encrypted, status,"
            " created_at) VALUES "
            + ", ".join(
                f"('{i}', '{owner}', '{name}', 'robot', '-', 'ACTIVE', '2026-11-27 {at}:00+00')"
                for i, owner, name, at in connections
            ),
        )
    )
    upgrade(database_url)
    rows = asyncio.run(
        _execute(database_url, "SELECT id, name, name_key FROM connections ORDER BY id")
    )
    assert [tuple(row) for row in rows] == [
        ("c1", "Nightly", "nightly"),
        ("c2", "nightly (3)", "nightly (3)"),
        ("c3", "NIGHTLY (4)", "nightly (4)"),
        ("c4", "Nightly (2)", "nightly (2)"),
        ("c5", "Nightly", "nightly"),
    ]
    with pytest.raises(IntegrityError):
        asyncio.run(
            _execute(
                database_url,
                "INSERT INTO connections (id, owner_id, name, name_key, username,"
                " password_encrypted, status, created_at) VALUES ('c6', 'u1', 'NightLY',"
                " 'nightly', 'r', '-', 'ACTIVE', '2026-11-28 10:00:00+00')",
            )
        )
    assert asyncio.run(_differences(database_url)) == []
