"""Bring a database to the newest schema with alembic (run at every start)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from alembic import command
from alembic.config import Config

from app.private_files import keep_sqlite_private
from app.settings import sqlite_path

MIGRATIONS = Path(__file__).with_name("migrations")


def alembic_config(database_url: str) -> Config:
    """An alembic configuration for the given database, without an ini file."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def upgrade(database_url: str) -> None:
    """Apply every migration the database lacks; a SQLite file is created (and kept)
    readable by its owner only. Every start migrates first, so this is where a
    service's database file is made."""
    database = sqlite_path(database_url)
    if database is not None:
        keep_sqlite_private(database)
    command.upgrade(alembic_config(database_url), "head")


async def upgrade_async(database_url: str) -> None:
    """`upgrade` from async code: alembic's environment runs its own event loop."""
    await asyncio.to_thread(upgrade, database_url)
