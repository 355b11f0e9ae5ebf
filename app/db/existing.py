"""The server's database, found by the command line: never created, never migrated.

`machine-groups serve` makes, migrates and bootstraps its database at start. The other
commands that open a database (`token`, `users ...`) must open that same one: a command
run in another folder, or with other settings, would otherwise make a new empty database
beside it, and mint tokens the running server refuses.
"""

from __future__ import annotations

from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import create_async_engine

from app.db.migrate import alembic_config
from app.settings import sqlite_path

FIND_IT = "set MG_DATABASE_URL to the server's database"
SERVE_HERE = (
    f"run this in the folder where `machine-groups serve` runs (its database is there),"
    f" or {FIND_IT}"
)


class NoDatabase(Exception):
    """The settings name no database the server made; the message says where it looked."""


def shown(database_url: str) -> str:
    """A database URL as it may be printed: without its password."""
    return make_url(database_url).render_as_string(hide_password=True)


def check_file(database_url: str) -> None:
    """NoDatabase if the settings name a SQLite file that does not exist (checked before
    anything opens it: opening a missing SQLite file creates it)."""
    path = sqlite_path(database_url)
    if path is not None and not path.exists():
        raise NoDatabase(f"no database at {path.absolute()}: {SERVE_HERE}")


async def check_schema(database_url: str) -> None:
    """NoDatabase unless the database holds the schema this version of the server makes."""
    where = shown(database_url)
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as connection:
            revision = await connection.run_sync(_revision)
    except Exception as error:  # any failure to open it: said in one line, not a traceback
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise NoDatabase(f"cannot open the database at {where} ({reason}): {FIND_IT}") from None
    finally:
        await engine.dispose()
    head = ScriptDirectory.from_config(alembic_config(database_url)).get_current_head()
    if revision is None:
        raise NoDatabase(
            f"the database at {where} holds no Machine Groups data: start `machine-groups"
            f" serve` with these settings first (it creates the database), or {FIND_IT}"
        )
    if revision != head:
        raise NoDatabase(
            f"the database at {where} has schema {revision}, this version expects {head}:"
            " start `machine-groups serve` of this version once (it migrates the database)"
        )


def _revision(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()
