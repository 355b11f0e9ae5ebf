"""Where SQLite's calls run: on the event loop's thread unless they would wait (a write lock
held by another process, a checkpoint), which go to a worker thread."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.engine import Database, keep_checkpointing

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


def test_reads_and_writes_run_on_the_event_loop_thread_when_nothing_holds_the_lock(
    tmp_path: Path,
) -> None:
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
    assert write == loop_thread


HOLD_LOCK = """
import sqlite3, sys, time
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("BEGIN IMMEDIATE")
db.execute("INSERT INTO notes VALUES ('from the other process')")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
db.execute("COMMIT")
"""


def test_a_write_waits_for_another_process_lock_off_the_loop_and_then_commits(
    tmp_path: Path,
) -> None:
    path = tmp_path / "threads.db"
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("CREATE TABLE notes (body TEXT)")
    hold_seconds = 0.6

    async def scenario() -> tuple[int, int, int, list[str]]:
        database = Database(f"sqlite+aiosqlite:///{path}")
        try:
            ticks = 0

            async def tick() -> None:
                nonlocal ticks
                while True:
                    await asyncio.sleep(0.01)
                    ticks += 1

            ticker = asyncio.create_task(tick())
            async with database.write() as session:
                write = await _thread_running_sql(session)
                await session.execute(text("INSERT INTO notes VALUES ('from the service')"))
            ticker.cancel()
            async with database.read() as session:
                notes = list((await session.execute(text("SELECT body FROM notes"))).scalars())
            return threading.get_ident(), write, ticks, notes
        finally:
            await database.dispose()

    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(path), str(hold_seconds)], stdout=subprocess.PIPE
    )
    assert holder.stdout is not None
    with holder.stdout:
        assert holder.stdout.readline() == b"locked\n"
        loop_thread, write, ticks, notes = asyncio.run(scenario())
    assert holder.wait(10) == 0
    assert write != loop_thread
    # The loop kept running while the write waited about `hold_seconds` for the lock.
    assert ticks >= 10
    assert notes == ["from the other process", "from the service"]


def _notes_in_database_file(path: Path, copy: Path) -> list[str]:
    """The notes in the database file alone, without its write-ahead log."""
    shutil.copyfile(path, copy)
    with contextlib.closing(sqlite3.connect(copy)) as db:
        return [body for (body,) in db.execute("SELECT body FROM notes")]


def test_writes_on_the_loop_reach_the_database_file_at_a_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "threads.db"

    async def scenario() -> tuple[list[str], list[str], list[str]]:
        database = Database(f"sqlite+aiosqlite:///{path}")
        try:
            async with database.write() as session:
                await session.execute(text("CREATE TABLE notes (body TEXT)"))
            await database.checkpoint()
            async with database.write() as session:
                await session.execute(text("INSERT INTO notes VALUES ('first')"))
            before = _notes_in_database_file(path, tmp_path / "before.db")
            await database.checkpoint()
            after = _notes_in_database_file(path, tmp_path / "after.db")
            # The background task checkpoints later writes by itself.
            checkpoints = asyncio.create_task(keep_checkpointing(database, every=0.05))
            async with database.write() as session:
                await session.execute(text("INSERT INTO notes VALUES ('second')"))
            for _ in range(250):
                await asyncio.sleep(0.02)
                later = _notes_in_database_file(path, tmp_path / "later.db")
                if len(later) == 2:
                    break
            checkpoints.cancel()
            return before, after, later
        finally:
            await database.dispose()

    before, after, later = asyncio.run(scenario())
    assert before == []  # no checkpoint at commit, on the loop's thread
    assert after == ["first"]
    assert later == ["first", "second"]


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
