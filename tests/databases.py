"""Which database the tests run on: a fresh SQLite file, or a fresh PostgreSQL database.

`.ci/run` runs the suite twice: once on SQLite, once with MG_TEST_POSTGRES_URL naming a
PostgreSQL server, where every test gets a database of its own.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import asyncpg
from sqlalchemy.engine import make_url

POSTGRES_URL = os.environ.get("MG_TEST_POSTGRES_URL", "").strip() or None


def _dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


async def _admin(sql: str) -> None:
    assert POSTGRES_URL is not None
    connection = await asyncpg.connect(_dsn(POSTGRES_URL))
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


@contextmanager
def fresh_database(folder: Path) -> Iterator[str]:
    """The URL of an empty database, dropped afterwards (a SQLite file in `folder`)."""
    if POSTGRES_URL is None:
        yield f"sqlite+aiosqlite:///{folder / 'test.db'}"
        return
    name = f"mg_test_{uuid.uuid4().hex[:16]}"
    asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
