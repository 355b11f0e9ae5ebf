"""The async engine and the two kinds of transaction the service uses: read and write."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from app import deadline
from app.db import inline_sqlite

SQLITE_BUSY_TIMEOUT_MS = 10_000
# How often writes made on the event loop's thread are checkpointed into the database file
# (SQLite's own default would do it at a commit once the WAL holds 1,000 pages).
CHECKPOINT_SECONDS = 1.0
logger = logging.getLogger("app.db")
_IMMEDIATE = "mg_begin_immediate"


def _configure_sqlite(engine: AsyncEngine, *, on_loop: bool = False) -> None:
    """WAL, a busy timeout, foreign keys, and BEGIN IMMEDIATE for writes.

    pysqlite's own transaction handling is switched off so that the transaction starts
    with the statement we choose: a write transaction takes SQLite's write lock up
    front, so two writers queue on the busy timeout instead of failing mid-way.
    Connections used `on_loop` never wait: no busy timeout (a lock held by another
    process fails at once) and no checkpoint at commit (it writes and syncs the database
    file); `Database.checkpoint` does that off the loop.
    """

    @event.listens_for(engine.sync_engine, "connect")
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={0 if on_loop else SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        if on_loop:
            cursor.execute("PRAGMA wal_autocheckpoint=0")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def on_begin(connection: Connection) -> None:
        immediate = connection.get_execution_options().get(_IMMEDIATE, False)
        # Straight to the driver: SQLAlchemy's statement path (events, execution
        # context, result) cost more than SQLite's BEGIN, and every request begins one.
        cursor = connection.connection.cursor()
        try:
            cursor.execute("BEGIN IMMEDIATE" if immediate else "BEGIN")
        finally:
            cursor.close()


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
        self._on_loop_write: async_sessionmaker[AsyncSession] | None = None
        if self.is_sqlite:
            # SQLite calls run on the event loop's thread (app/db/inline_sqlite.py), as
            # long as they cannot wait: reads (WAL readers take no lock) and writes that got
            # the write lock at once. A write that finds another process holding the lock
            # waits for it on aiosqlite's worker thread; so does the WAL checkpoint.
            threaded = create_async_engine(url, **engine_options)
            self.engine = create_async_engine(
                url, async_creator=_inline_connector(threaded), **engine_options
            )
            on_loop_write = create_async_engine(
                url, async_creator=_inline_connector(threaded), **engine_options
            )
            # Reads keep the busy timeout: they take no lock in WAL mode, except for rare
            # moments (recovering the WAL at first open) that are better waited out.
            _configure_sqlite(threaded)
            _configure_sqlite(self.engine)
            _configure_sqlite(on_loop_write, on_loop=True)
            self._on_loop_write = _write_sessions(on_loop_write)
            self._engines = {self.engine, on_loop_write, threaded}
        else:
            self.engine = threaded = create_async_engine(url, **engine_options)
            _refuse_nul_text(self.engine)
            self._engines = {self.engine}
        self._threaded = threaded
        self._read = async_sessionmaker(self.engine, expire_on_commit=False)
        self._write = _write_sessions(threaded)
        # SQLite has one writer at a time. Writers of this process queue here, first come
        # first served, instead of in SQLite's busy handler, whose sleeping retries can
        # starve one writer past the busy timeout under load ("database is locked").
        self._writer_turn = asyncio.Lock() if self.is_sqlite else None
        self.writes_since_checkpoint = 0

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        """A session for queries; its transaction is rolled back at the end."""
        with _request_work():
            async with self._read() as session:
                yield session

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncSession]:
        """A session whose transaction commits on success and rolls back on error.

        An error that carries `keep_changes = True` commits first: a wrong group
        password fails its mutation yet must leave its trace for the throttle.
        """
        with _request_work():
            async with self._writing() as session:
                yield session

    @asynccontextmanager
    async def _writing(self) -> AsyncIterator[AsyncSession]:
        async with self._turn():
            session = await self._begin_on_loop() or self._write()
            async with session:
                try:
                    yield session
                except BaseException as error:
                    if getattr(error, "keep_changes", False):
                        await session.commit()
                        self.writes_since_checkpoint += 1
                    else:
                        await session.rollback()
                    raise
                else:
                    await session.commit()
                    self.writes_since_checkpoint += 1

    async def _begin_on_loop(self) -> AsyncSession | None:
        """A write session on the loop's thread holding the write lock, or None when
        another process holds it (the caller then waits for it on a worker thread)."""
        if self._on_loop_write is None:
            return None
        session = self._on_loop_write()
        try:
            await session.connection()  # BEGIN IMMEDIATE, with no busy timeout
        except Exception as error:
            await session.close()
            # The driver's own error: BEGIN is sent straight to it (see on_begin).
            cause = getattr(error, "orig", error)
            if getattr(cause, "sqlite_errorname", "") != "SQLITE_BUSY":
                raise
            return None
        return session

    async def checkpoint(self) -> None:
        """Copy the SQLite WAL into the database file, on a worker thread (a no-op on
        PostgreSQL). Writes on the loop's thread leave this to a background task."""
        if not self.is_sqlite:
            return
        # Writes committed while this runs are counted for the next checkpoint.
        covered = self.writes_since_checkpoint
        async with self._threaded.connect() as connection:
            await connection.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")
        self.writes_since_checkpoint -= covered

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


@contextmanager
def _request_work() -> Iterator[None]:
    """Database work of the request being served (app/deadline.py): a pool with no
    connection free in time, or a SQLite lock that stayed taken, gives the request up as
    busy, once, instead of failing each of its fields with a traceback; a SQLite statement
    interrupted at the deadline gives it up as too slow."""
    with deadline.working():
        try:
            yield
        except PoolTimeout as error:
            raise deadline.give_up(deadline.ServiceBusy()) from error
        except OperationalError as error:
            name = getattr(error.orig, "sqlite_errorname", "")
            if name == "SQLITE_BUSY":
                raise deadline.give_up(deadline.ServiceBusy()) from error
            if name == "SQLITE_INTERRUPT":
                raise deadline.deadline_passed() from error
            raise


async def keep_checkpointing(db: Database, every: float = CHECKPOINT_SECONDS) -> None:
    """Checkpoint the WAL every `every` seconds when there were writes (until cancelled)."""
    while True:
        await asyncio.sleep(every)
        if db.writes_since_checkpoint:
            try:
                await db.checkpoint()
            except OperationalError:
                # The WAL keeps the data meanwhile: the next round tries again.
                logger.warning("WAL checkpoint failed", exc_info=True)


def _write_sessions(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(
        engine.execution_options(**{_IMMEDIATE: True}), expire_on_commit=False
    )
