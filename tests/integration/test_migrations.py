"""The database layer on a real SQLite file: migrations, engine, transactions, bootstrap."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, func, inspect, select, text
from sqlalchemy.exc import IntegrityError
from sqlmodel import SQLModel, col

import app.db.models  # noqa: F401  (registers every table on SQLModel.metadata)
from app.db.bootstrap import bootstrap
from app.db.engine import SQLITE_BUSY_TIMEOUT_MS, Database
from app.db.migrate import alembic_config, upgrade
from app.db.models import Environment, MachineGroup, RoleAssignment, User
from app.domain.clock import ManualClock
from app.domain.enums import SecurityRole
from app.domain.errors import DomainError, WrongGroupPassword
from app.settings import Settings
from app.state import AppState
from tests.conftest import POLICIES

pytestmark = pytest.mark.sqlite_only

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def _url(path: Path) -> str:
    return f"sqlite+aiosqlite:///{path}"


@pytest.fixture
def db_file(tmp_path: Path) -> Path:
    """A fresh SQLite file brought to the newest schema by the migrations."""
    path = tmp_path / "migrated.db"
    upgrade(_url(path))
    return path


@pytest.fixture
def database(db_file: Path) -> Iterator[Database]:
    """The service's `Database` on the migrated file (disposed after the test)."""
    database = Database(_url(db_file))
    yield database
    asyncio.run(database.dispose())


def _schema_differences(path: Path) -> list[Any]:
    engine = create_engine(f"sqlite:///{path}")
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(
                connection, opts={"compare_type": True, "compare_server_default": True}
            )
            return list(compare_metadata(context, SQLModel.metadata))
    finally:
        engine.dispose()


# --- migrations -------------------------------------------------------------


def test_migrations_build_exactly_the_schema_of_the_models(db_file: Path) -> None:
    assert _schema_differences(db_file) == []


def test_the_comparison_sees_a_schema_that_differs(db_file: Path) -> None:
    """The check above is not vacuous: a dropped index is reported."""
    with sqlite3.connect(db_file) as connection:
        connection.execute("DROP INDEX ix_machines_group_id")
    differences = _schema_differences(db_file)
    assert [difference[0] for difference in differences] == ["add_index"]


def test_migrating_twice_changes_nothing(db_file: Path) -> None:
    upgrade(_url(db_file))
    assert _schema_differences(db_file) == []
    with sqlite3.connect(db_file) as connection:
        (version,) = connection.execute("SELECT version_num FROM alembic_version").fetchall()
    head = ScriptDirectory.from_config(alembic_config(_url(db_file))).get_current_head()
    assert version == (head,)


def test_a_fresh_file_holds_every_table_of_the_models(db_file: Path) -> None:
    engine = create_engine(f"sqlite:///{db_file}")
    try:
        tables = set(inspect(engine).get_table_names())
    finally:
        engine.dispose()
    assert tables == set(SQLModel.metadata.tables) | {"alembic_version"}


# --- engine settings --------------------------------------------------------


def test_sqlite_connections_use_wal_a_busy_timeout_and_foreign_keys(database: Database) -> None:
    async def pragmas() -> tuple[Any, Any, Any]:
        async with database.read() as session:
            mode = await session.scalar(text("PRAGMA journal_mode"))
            timeout = await session.scalar(text("PRAGMA busy_timeout"))
            foreign_keys = await session.scalar(text("PRAGMA foreign_keys"))
            return mode, timeout, foreign_keys

    mode, timeout, foreign_keys = asyncio.run(pragmas())
    assert mode == "wal"
    assert timeout == SQLITE_BUSY_TIMEOUT_MS > 0
    assert foreign_keys == 1


def test_foreign_keys_are_enforced(database: Database) -> None:
    async def orphan() -> None:
        async with database.write() as session:
            session.add(
                MachineGroup(
                    environment_id="no-such-environment",
                    name="orphan",
                    name_key="orphan",
                    owner_id="no-such-user",
                    created_at=NOW,
                )
            )

    with pytest.raises(IntegrityError, match="FOREIGN KEY"):
        asyncio.run(orphan())


def test_a_write_session_takes_the_write_lock_when_it_begins(
    database: Database, db_file: Path
) -> None:
    """BEGIN IMMEDIATE: while a write transaction is open (having only read), no other
    connection may start writing, yet readers still read."""
    outcome: dict[str, Any] = {}

    async def hold_write_transaction() -> None:
        async with database.write() as session:
            outcome["seen_in_write"] = await session.scalar(select(func.count(col(User.id))))
            other = sqlite3.connect(db_file, timeout=0, isolation_level=None)
            try:
                with pytest.raises(sqlite3.OperationalError, match="locked"):
                    other.execute("BEGIN IMMEDIATE")
                outcome["read_by_other"] = other.execute("SELECT count(*) FROM users").fetchone()
            finally:
                other.close()
        # Once the write transaction is over, others may write again.
        after = sqlite3.connect(db_file, timeout=0, isolation_level=None)
        try:
            after.execute("BEGIN IMMEDIATE")
            after.execute("ROLLBACK")
        finally:
            after.close()

    asyncio.run(hold_write_transaction())
    assert outcome == {"seen_in_write": 0, "read_by_other": (0,)}


def test_a_read_session_does_not_take_the_write_lock(database: Database, db_file: Path) -> None:
    async def read_while_another_writes() -> None:
        async with database.read() as session:
            await session.scalar(select(func.count(col(User.id))))
            other = sqlite3.connect(db_file, timeout=0, isolation_level=None)
            try:
                other.execute("BEGIN IMMEDIATE")
                other.execute("ROLLBACK")
            finally:
                other.close()

    asyncio.run(read_while_another_writes())


def test_concurrent_writers_wait_for_each_other_and_readers_do_not(database: Database) -> None:
    """Two read-modify-write transactions that overlap both succeed, one after the other
    (no lost update, no 'database is locked'); a read meanwhile sees the committed state."""

    async def scenario() -> tuple[str, str, list[str]]:
        async with database.write() as session:
            session.add(Environment(name="0", name_key="counter", region="us", created_at=NOW))
        order: list[str] = []
        first_has_read = asyncio.Event()

        async def increment(name: str, hold: float) -> None:
            async with database.write() as session:
                environment = await session.scalar(
                    select(Environment).where(col(Environment.name_key) == "counter")
                )
                assert environment is not None
                order.append(f"{name} read {environment.name}")
                first_has_read.set()
                await asyncio.sleep(hold)
                environment.name = str(int(environment.name) + 1)
            order.append(f"{name} committed")

        first = asyncio.create_task(increment("first", 0.5))
        await first_has_read.wait()
        second = asyncio.create_task(increment("second", 0))
        await asyncio.sleep(0.1)
        async with database.read() as session:
            during = await session.scalar(
                select(col(Environment.name)).where(col(Environment.name_key) == "counter")
            )
        await asyncio.gather(first, second)
        async with database.read() as session:
            final = await session.scalar(
                select(col(Environment.name)).where(col(Environment.name_key) == "counter")
            )
        assert during is not None and final is not None
        return during, final, order

    during, final, order = asyncio.run(scenario())
    assert during == "0"
    assert final == "2"
    assert order == ["first read 0", "first committed", "second read 1", "second committed"]


# --- write(): commit, rollback, keep_changes -------------------------------


class _Failure(Exception):
    pass


class _FailureThatKeepsItsTrace(Exception):
    keep_changes = True


async def _add_environment_then(database: Database, name: str, error: Exception | None) -> None:
    async with database.write() as session:
        session.add(Environment(name=name, name_key=name, region="us", created_at=NOW))
        await session.flush()
        if error is not None:
            raise error


async def _environment_names(database: Database) -> set[str]:
    async with database.read() as session:
        return set(await session.scalars(select(col(Environment.name_key))))


def test_a_write_session_commits_on_success(database: Database) -> None:
    asyncio.run(_add_environment_then(database, "kept", None))
    assert asyncio.run(_environment_names(database)) == {"kept"}


def test_an_error_inside_write_rolls_everything_back(database: Database) -> None:
    with pytest.raises(_Failure):
        asyncio.run(_add_environment_then(database, "lost", _Failure()))
    assert asyncio.run(_environment_names(database)) == set()


def test_an_error_that_keeps_changes_commits_and_still_propagates(database: Database) -> None:
    with pytest.raises(_FailureThatKeepsItsTrace):
        asyncio.run(_add_environment_then(database, "trace", _FailureThatKeepsItsTrace()))
    assert asyncio.run(_environment_names(database)) == {"trace"}


def test_a_wrong_group_password_is_an_error_that_keeps_changes() -> None:
    assert WrongGroupPassword.keep_changes is True
    assert DomainError.keep_changes is False


# --- bootstrap --------------------------------------------------------------


async def _bootstrapped_rows(database: Database) -> tuple[list[Any], list[Any], list[Any]]:
    async with database.read() as session:
        environments = [
            (row.name, row.region) for row in await session.scalars(select(Environment))
        ]
        users = [
            (row.name, row.premium, row.deactivated) for row in await session.scalars(select(User))
        ]
        roles = list(
            await session.execute(
                select(col(User.name), col(Environment.name), col(RoleAssignment.role))
                .select_from(RoleAssignment)
                .join(User, col(User.id) == col(RoleAssignment.user_id))
                .join(Environment, col(Environment.id) == col(RoleAssignment.environment_id))
            )
        )
        return environments, users, [tuple(row) for row in roles]


def test_bootstrap_creates_the_default_environment_and_admin_once(database: Database) -> None:
    async def run_twice() -> tuple[bool, bool]:
        async with database.write() as session:
            first = await bootstrap(session, "eu", NOW)
        async with database.write() as session:
            second = await bootstrap(session, "us", NOW)
        return first, second

    assert asyncio.run(run_twice()) == (True, False)
    environments, users, roles = asyncio.run(_bootstrapped_rows(database))
    assert environments == [("default", "eu")]
    assert users == [("admin", False, False)]
    assert roles == [("admin", "default", SecurityRole.SYSTEM_ADMINISTRATOR.value)]


def test_restarting_the_service_migrates_and_bootstraps_only_once(tmp_path: Path) -> None:
    settings = Settings(
        database_url=_url(tmp_path / "service.db"),
        secret_keys=("test-secret-key-0123456789abcdef0123456789",),
        policy_dir=POLICIES,
    )

    async def start_and_stop() -> str:
        state = AppState.build(settings, ManualClock(NOW))
        await state.start()
        try:
            return state.default_environment_id
        finally:
            await state.stop()

    first_id = asyncio.run(start_and_stop())
    second_id = asyncio.run(start_and_stop())
    assert first_id == second_id != ""
    database = Database(settings.database_url)
    try:
        environments, users, roles = asyncio.run(_bootstrapped_rows(database))
    finally:
        asyncio.run(database.dispose())
    assert environments == [("default", "us")]
    assert users == [("admin", False, False)]
    assert roles == [("admin", "default", "SYSTEM_ADMINISTRATOR")]
