"""The async engine and the two kinds of transaction the service uses: read and write."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from app.db import inline_sqlite

SQLITE_BUSY_TIMEOUT_MS = 10_000
_IMMEDIATE = "mg_begin_immediate"


def _configure_sqlite(engine: AsyncEngine) -> None:
    """WAL, a busy timeout, foreign keys, and BEGIN IMMEDIATE for writes.

    pysqlite's own transaction handling is switched off so that the transaction starts
    with the statement we choose: a write transaction takes SQLite's write lock up
    front, so two writers queue on the busy timeout instead of failing mid-way.
    """

    @event.listens_for(engine.sync_engine, "connect")
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def on_begin(connection: Connection) -> None:
        immediate = connection.get_execution_options().get(_IMMEDIATE, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def _inline_connector(engine: AsyncEngine) -> Callable[[], Awaitable[Any]]:
    """Connections to the engine's SQLite database that run on the event loop's thread."""
    args, kwargs = engine.dialect.create_connect_args(engine.url)

    async def connect() -> Any:
        return await inline_sqlite.connect(*args, **kwargs)

    return connect


class NulCharacterError(ValueError):
    """Text for PostgreSQL held a NUL character, which it cannot store or compare."""


def _has_nul(parameters: Any) -> bool:
    if isinstance(parameters, str):
        return "\x00" in parameters
    if isinstance(parameters, dict):
        return any(_has_nul(value) for value in parameters.values())
    if isinstance(parameters, list | tuple):
        return any(_has_nul(value) for value in parameters)
    return False


def _refuse_nul_text(engine: AsyncEngine) -> None:
    """PostgreSQL rejects NUL in text with a driver error; refuse it first, clearly."""

    @event.listens_for(engine.sync_engine, "before_cursor_execute")
    def check(
        _conn: Any, _cursor: Any, _statement: str, parameters: Any, _context: Any, _many: bool
    ) -> None:
        if _has_nul(parameters):
            raise NulCharacterError("text must not contain NUL characters")


class Database:
    """Owns the engines; hands out read and write sessions."""

    def __init__(self, url: str, **engine_options: Any) -> None:
        self.url = url
        self.is_sqlite = make_url(url).get_backend_name() == "sqlite"
        if self.is_sqlite:
            # Reads run on the event loop's thread (app/db/inline_sqlite.py); writes keep
            # aiosqlite's worker thread, so a write waiting for another process's lock,
            # or a commit that checkpoints the WAL to disk, never stalls the loop.
            write_engine = create_async_engine(url, **engine_options)
            self.engine = create_async_engine(
                url, async_creator=_inline_connector(write_engine), **engine_options
            )
            for engine in (self.engine, write_engine):
                _configure_sqlite(engine)
        else:
            self.engine = write_engine = create_async_engine(url, **engine_options)
            _refuse_nul_text(self.engine)
        self._engines = {self.engine, write_engine}
        self._read = async_sessionmaker(self.engine, expire_on_commit=False)
        self._write = async_sessionmaker(
            write_engine.execution_options(**{_IMMEDIATE: True}), expire_on_commit=False
        )
        # SQLite has one writer at a time. Writers of this process queue here, first come
        # first served, instead of in SQLite's busy handler, whose sleeping retries can
        # starve one writer past the busy timeout under load ("database is locked").
        self._writer_turn = asyncio.Lock() if self.is_sqlite else None

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        """A session for queries; its transaction is rolled back at the end."""
        async with self._read() as session:
            yield session

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncSession]:
        """A session whose transaction commits on success and rolls back on error.

        An error that carries `keep_changes = True` commits first: a wrong group
        password fails its mutation yet must leave its trace for the throttle.
        """
        async with self._turn(), self._write() as session:
            try:
                yield session
            except BaseException as error:
                if getattr(error, "keep_changes", False):
                    await session.commit()
                else:
                    await session.rollback()
                raise
            else:
                await session.commit()

    @asynccontextmanager
    async def _turn(self) -> AsyncIterator[None]:
        if self._writer_turn is None:
            yield
        else:
            async with self._writer_turn:
                yield

    async def dispose(self) -> None:
        """Close every pooled connection."""
        for engine in self._engines:
            await engine.dispose()
