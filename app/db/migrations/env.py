"""Alembic environment: runs the migrations on the service's own async engine."""

from __future__ import annotations

import asyncio
import time

from alembic import context
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine
from sqlmodel import SQLModel

import app.db.models  # noqa: F401  (registers the tables on SQLModel.metadata)

target_metadata = SQLModel.metadata
MIGRATION_LOCK = 0x6D67_0001  # "mg" 1: any constant shared by every server
LOCK_RETRY_SECONDS = 0.1


def _wait_for_migration_lock(connection: Connection) -> None:
    """Take the session lock by trying, committing between tries.

    A server blocked inside `pg_advisory_lock` holds an open transaction, and the holder's
    CREATE INDEX CONCURRENTLY waits for every open transaction to end: a deadlock.
    Between tries this connection holds no transaction at all.
    """
    while True:
        taken = connection.execute(
            text("SELECT pg_try_advisory_lock(:key)"), {"key": MIGRATION_LOCK}
        ).scalar_one()
        connection.commit()
        if taken:
            return
        time.sleep(LOCK_RETRY_SECONDS)


def _run(connection: Connection) -> None:
    postgresql = connection.dialect.name == "postgresql"
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        # Each migration commits with its version: one that builds indexes concurrently
        # (outside any transaction, app/db/online_index.py) commits those before it.
        transaction_per_migration=True,
    )
    if postgresql:
        # Servers starting together migrate one at a time; the others then find nothing
        # to do. A session lock, held across the migrations' own commits. (SQLite's
        # database lock already serialises this.)
        _wait_for_migration_lock(connection)
    try:
        with context.begin_transaction():
            context.run_migrations()
    finally:
        if postgresql:
            connection.rollback()
            connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK})
            connection.commit()


async def _run_async() -> None:
    engine = create_async_engine(context.config.get_main_option("sqlalchemy.url") or "")
    async with engine.connect() as connection:
        await connection.run_sync(_run)
    await engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline migrations are not supported; run them against a database")
asyncio.run(_run_async())
