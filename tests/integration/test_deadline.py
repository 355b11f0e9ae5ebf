"""A request's database work stops at its deadline, and a dry pool gives it up once, on
SQLite (whose statements run on the event loop's thread) and PostgreSQL alike."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import pytest
from sqlalchemy import text

from app.db.engine import Database
from app.deadline import DeadlineExceeded, ServiceBusy, bounded

# Seconds of work for the database, whatever the machine: SQLite counts to a billion.
SLOW = {
    "sqlite": "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c"
    " WHERE x < 1000000000) SELECT count(*) FROM c",
    "postgresql": "SELECT pg_sleep(30)",
}
SLEEPING = "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query = :q"
T = TypeVar("T")


def _with(database_url: str, scenario: Callable[[Database], Awaitable[T]], **pool: float) -> T:
    async def run() -> T:
        database = Database(database_url, **pool)
        try:
            return await scenario(database)
        finally:
            await database.dispose()

    return asyncio.run(run())


async def _answers(database: Database) -> int:
    async with database.read() as session:
        return int((await session.execute(text("SELECT 1"))).scalar_one())


def test_a_statement_is_stopped_at_the_deadline(database_url: str) -> None:
    async def scenario(database: Database) -> None:
        slow = SLOW[database.engine.dialect.name]
        began = time.monotonic()
        with pytest.raises(DeadlineExceeded, match=r"limit of 0\.2 s"):
            async with bounded(0.2), database.read() as session:
                await session.execute(text(slow))
        assert time.monotonic() - began < 2
        assert await _answers(database) == 1  # and the pool is whole
        if not database.is_sqlite:  # the server stopped the statement, too
            async with database.read() as session:
                still = await session.scalar(text(SLEEPING), {"q": slow})
            assert still == 0

    _with(database_url, scenario)


def test_a_dry_pool_gives_the_request_up_once(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Every read of the request waits for the one connection held elsewhere; the first
    to give up ends the request, well before its deadline, with one line in the log."""

    async def scenario(database: Database) -> float:
        release = asyncio.Event()

        async def hold() -> None:
            async with database.read() as session:
                await session.execute(text("SELECT 1"))
                await release.wait()

        holder = asyncio.create_task(hold())
        await asyncio.sleep(0.05)
        began = time.monotonic()
        try:
            with pytest.raises(ServiceBusy):
                async with bounded(5):
                    await asyncio.gather(*(_answers(database) for _ in range(10)))
        finally:
            release.set()
            await holder
        assert await _answers(database) == 1
        return time.monotonic() - began

    caplog.set_level(logging.WARNING, logger="app.deadline")
    waited = _with(database_url, scenario, pool_size=1, max_overflow=0, pool_timeout=0.2)
    assert waited < 2
    assert [record.getMessage() for record in caplog.records] == [
        "request stopped (SERVICE_BUSY): the service is busy: try again in a moment"
    ]
