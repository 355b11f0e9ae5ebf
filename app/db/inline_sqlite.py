"""aiosqlite's connection, run on the event loop's own thread instead of a worker thread.

aiosqlite hands every call (execute, fetch, close cursor, commit) to a worker thread and
back: two thread switches each, where SQLite answers the service's indexed reads in a
fraction of that. Measured through SQLAlchemy's async session, a read transaction with one
statement took 0.45 ms of CPU run inline against 1.5 ms through the worker thread. The
price is that a call which waits blocks the event loop, so only calls that cannot wait
run this way: reads (in WAL mode a reader takes no lock) and writes that took the write
lock at once; app/db/engine.py sends the others, and WAL checkpoints, to the worker thread.
Nor can a cancellation reach a statement running on the loop's thread: SQLite's progress
handler stops it once the request it works for is past its deadline (app/deadline.py).
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Generator
from functools import partial
from typing import Any

import aiosqlite

from app import deadline

# SQLite virtual-machine steps between two looks at the deadline: about a millisecond of
# work, so a statement stops soon after it; an indexed read finishes before the first look.
PROGRESS_STEPS = 100_000


class _RunNow:
    """Stands in for the queue to aiosqlite's worker thread, which SQLAlchemy's adapter
    also uses directly (to set `isolation_level`): runs each call as it is queued."""

    def put_nowait(self, item: tuple[asyncio.Future[Any] | None, Callable[[], Any]]) -> None:
        future, function = item
        try:
            result = function()
        except Exception as error:
            if future is not None:
                future.set_exception(error)
        else:
            if future is not None:
                future.set_result(result)


class InlineConnection(aiosqlite.Connection):
    """An aiosqlite connection whose calls run where they are awaited."""

    def __init__(self, connector: Callable[[], sqlite3.Connection], iter_chunk_size: int) -> None:
        super().__init__(connector, iter_chunk_size)
        self._tx = _RunNow()  # type: ignore[assignment]

    async def _execute(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if not self._running or self._connection is None:
            raise ValueError("Connection closed")
        return fn(*args, **kwargs)

    async def _connect(self) -> InlineConnection:
        if self._connection is None:
            self._connection = self._connector()
            self._connection.set_progress_handler(_interrupt_past_deadline, PROGRESS_STEPS)
        return self

    def __await__(self) -> Generator[Any, None, InlineConnection]:
        # No worker thread to start.
        return self._connect().__await__()

    def stop(self) -> None:
        """Close the SQLite connection (there is no thread to stop)."""
        self._running = False
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    async def close(self) -> None:
        """Close the SQLite connection."""
        self.stop()


def _interrupt_past_deadline() -> int:
    """Non-zero makes SQLite abandon the statement ("interrupted")."""
    return 1 if deadline.past_deadline() else 0


def connect(database: str, *, iter_chunk_size: int = 64, **kwargs: Any) -> InlineConnection:
    """`aiosqlite.connect`'s signature, for SQLAlchemy's `async_creator`."""
    # SQLAlchemy's pool may close a connection from a garbage collector's finaliser.
    kwargs["check_same_thread"] = False
    return InlineConnection(partial(sqlite3.connect, database, **kwargs), iter_chunk_size)
