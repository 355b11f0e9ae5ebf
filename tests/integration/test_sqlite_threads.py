"""Where SQLite's calls run: reads on the event loop's thread, writes on a worker thread."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.engine import Database

pytestmark = pytest.mark.sqlite_only


async def _thread_running_sql(session: AsyncSession) -> int:
    """The thread on which SQLite evaluated a statement of this session."""
    connection = await session.connection()
    await connection.run_sync(
        lambda sync: sync.connection.dbapi_connection.create_function(  # type: ignore[union-attr]
            "thread_ident", 0, threading.get_ident
        )
    )
    return int((await session.execute(text("SELECT thread_ident()"))).scalar_one())


def test_reads_run_on_the_event_loop_thread_and_writes_do_not(tmp_path: Path) -> None:
    async def scenario() -> tuple[int, int, int]:
        database = Database(f"sqlite+aiosqlite:///{tmp_path / 'threads.db'}")
        try:
            async with database.read() as session:
                read = await _thread_running_sql(session)
            async with database.write() as session:
                write = await _thread_running_sql(session)
            return threading.get_ident(), read, write
        finally:
            await database.dispose()

    loop_thread, read, write = asyncio.run(scenario())
    assert read == loop_thread
    assert write != loop_thread


def test_a_read_sees_what_a_write_committed_and_nothing_of_one_rolled_back(
    tmp_path: Path,
) -> None:
    async def scenario() -> list[str]:
        database = Database(f"sqlite+aiosqlite:///{tmp_path / 'threads.db'}")
        try:
            async with database.write() as session:
                await session.execute(text("CREATE TABLE notes (body TEXT)"))
                await session.execute(text("INSERT INTO notes VALUES ('kept')"))
            with pytest.raises(RuntimeError):
                async with database.write() as session:
                    await session.execute(text("INSERT INTO notes VALUES ('undone')"))
                    raise RuntimeError("the rule failed")
            async with database.read() as session:
                return list((await session.execute(text("SELECT body FROM notes"))).scalars())
        finally:
            await database.dispose()

    assert asyncio.run(scenario()) == ["kept"]
