"""Index changes for migrations that must not stop writes on a live PostgreSQL database.

On PostgreSQL, an index is built with CREATE INDEX CONCURRENTLY and dropped with DROP
INDEX CONCURRENTLY: writes go on while the table is read (twice) to build it. Neither
may run inside a transaction, so they run in alembic's autocommit block (the migrations
before them are committed first; each migration is its own transaction, and the servers
migrate one at a time under a session lock, app/db/migrations/env.py). A build cut short
leaves an invalid index behind: every step first drops what a failed attempt may have
left, so running the migration again finishes the work.

An index that changes columns keeps its name: it is built beside the old one under a
temporary name, the old one dropped, and the new one renamed (a catalog change).

On SQLite there is no concurrent build: SQLite has one writer, and building an index
holds the write lock for as long as it reads the table. Migrations run when a server
starts, before it serves (app/db/migrate.py), so the build happens while the service is
starting, not under its traffic (about 2 s per index of 1,000,000 runs here).
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op
from sqlalchemy import TextClause, text


def _postgresql() -> bool:
    return bool(op.get_bind().dialect.name == "postgresql")


def _column(column: str) -> str:
    """A column of an index, quoted, with its order if given ("priority DESC")."""
    name, *order = column.split()
    return " ".join([f'"{name}"', *order])


def _columns(columns: Sequence[str]) -> str:
    return ", ".join(_column(column) for column in columns)


def _sqlite_columns(columns: Sequence[str]) -> list[str | TextClause]:
    # Alembic quotes a plain string as one column name: an ordered column is a text.
    return [text(_column(column)) if " " in column else column for column in columns]


def create_index(name: str, table: str, columns: Sequence[str]) -> None:
    """Build an index (concurrently on PostgreSQL); a column may carry its order
    ("priority DESC")."""
    if not _postgresql():
        op.create_index(name, table, _sqlite_columns(columns))
        return
    with op.get_context().autocommit_block():
        op.execute(f'DROP INDEX CONCURRENTLY IF EXISTS "{name}"')
        op.execute(f'CREATE INDEX CONCURRENTLY "{name}" ON "{table}" ({_columns(columns)})')


def drop_index(name: str, table: str) -> None:
    """Drop an index (concurrently on PostgreSQL)."""
    if not _postgresql():
        op.drop_index(name, table_name=table)
        return
    with op.get_context().autocommit_block():
        op.execute(f'DROP INDEX CONCURRENTLY IF EXISTS "{name}"')


def replace_index(name: str, table: str, columns: Sequence[str]) -> None:
    """Give the index `name` these columns, keeping its name."""
    if not _postgresql():
        op.drop_index(name, table_name=table)
        op.create_index(name, table, _sqlite_columns(columns))
        return
    building = f"{name}_new"[:63]
    with op.get_context().autocommit_block():
        op.execute(f'DROP INDEX CONCURRENTLY IF EXISTS "{building}"')
        op.execute(f'CREATE INDEX CONCURRENTLY "{building}" ON "{table}" ({_columns(columns)})')
        op.execute(f'DROP INDEX CONCURRENTLY IF EXISTS "{name}"')
        op.execute(f'ALTER INDEX "{building}" RENAME TO "{name}"')
