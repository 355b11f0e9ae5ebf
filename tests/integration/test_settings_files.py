"""Without MG_SECRET_KEY the signing key is generated once beside the SQLite file; it and
the SQLite files are readable by their owner only (0600), whatever the umask."""

from __future__ import annotations

import asyncio
import logging
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from app.db.engine import Database
from app.db.migrate import upgrade_async
from app.settings import SettingsError, load_settings
from app.state import AppState
from tests.conftest import POLICIES
from tests.integration.test_cli import run_cli
from tests.processes import ServerProcess

SIDE_FILES = ("-wal", "-shm")


def _env(database: Path, **more: str) -> dict[str, str]:
    return {"MG_DATABASE_URL": f"sqlite+aiosqlite:///{database}", **more}


def test_a_key_is_generated_beside_the_database_file_and_reused(tmp_path: Path) -> None:
    database = tmp_path / "data" / "service.db"
    key_file = tmp_path / "data" / "service.db.secret"
    assert not key_file.exists()

    first = load_settings(_env(database))

    assert key_file.is_file()
    (key,) = first.secret_keys
    assert key_file.read_text().strip() == key
    assert len(key) >= 32
    # A restart (or the `token` command) reads the same key back.
    assert load_settings(_env(database)).secret_keys == (key,)
    assert sorted(path.name for path in key_file.parent.iterdir()) == ["service.db.secret"]


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    """The process's umask for the test (inherited by the commands it starts): a
    permissive 022 unless the test is parametrized with another."""
    value: int = getattr(request, "param", 0o022)
    previous = os.umask(value)
    yield value
    os.umask(previous)


@pytest.mark.parametrize("umask", [0o022, 0o000, 0o277], indirect=True, ids=oct)
def test_the_generated_key_is_readable_by_its_owner_only(tmp_path: Path, umask: int) -> None:
    load_settings(_env(tmp_path / "service.db"))
    assert mode(tmp_path / "service.db.secret") == 0o600


def test_a_key_file_readable_by_others_is_made_private_at_start(
    tmp_path: Path, umask: int, caplog: pytest.LogCaptureFixture
) -> None:
    key_file = tmp_path / "service.db.secret"
    key_file.write_text("k" * 48 + "\n")
    key_file.chmod(0o644)

    with caplog.at_level(logging.WARNING, logger="app.files"):
        assert load_settings(_env(tmp_path / "service.db")).secret_keys == ("k" * 48,)
        load_settings(_env(tmp_path / "service.db"))

    assert mode(key_file) == 0o600
    (warning,) = caplog.records  # said once: the second start found nothing to change
    assert str(key_file) in warning.getMessage() and "644" in warning.getMessage()


def sqlite_files(database: Path) -> list[Path]:
    return [database, *(database.with_name(database.name + side) for side in SIDE_FILES)]


async def written(database_url: str) -> Database:
    """The database open through the service's engine after one write: SQLite keeps its
    write-ahead log and shared-memory files beside it until the last connection closes."""
    database = Database(database_url)
    async with database.write() as session:
        await session.execute(text("CREATE TABLE IF NOT EXISTS probe (x INTEGER)"))
        await session.execute(text("INSERT INTO probe VALUES (1)"))
    return database


@pytest.mark.sqlite_only
def test_migrations_create_the_database_and_its_side_files_private(
    tmp_path: Path, umask: int
) -> None:
    database_file = tmp_path / "service.db"
    database_url = f"sqlite+aiosqlite:///{database_file}"

    async def check() -> None:
        await upgrade_async(database_url)
        assert mode(database_file) == 0o600
        database = await written(database_url)
        try:
            # SQLite gives its side files the database file's mode.
            assert [mode(path) for path in sqlite_files(database_file)] == [0o600] * 3
        finally:
            await database.dispose()

    asyncio.run(check())


@pytest.mark.sqlite_only
def test_database_files_readable_by_others_are_made_private_at_start(
    tmp_path: Path, umask: int, caplog: pytest.LogCaptureFixture
) -> None:
    database_file = tmp_path / "service.db"
    database_url = f"sqlite+aiosqlite:///{database_file}"

    async def check() -> None:
        await upgrade_async(database_url)
        database = await written(database_url)  # another server, say, has it open
        try:
            for path in sqlite_files(database_file):
                path.chmod(0o644)
            with caplog.at_level(logging.WARNING, logger="app.files"):
                await upgrade_async(database_url)
            assert [mode(path) for path in sqlite_files(database_file)] == [0o600] * 3
        finally:
            await database.dispose()

    asyncio.run(check())
    assert len(caplog.records) == 3  # one warning per file


@pytest.mark.sqlite_only
def test_users_create_keeps_the_servers_database_and_key_private(
    tmp_path: Path, umask: int
) -> None:
    database = tmp_path / "service.db"
    settings = load_settings(_env(database, MG_POLICY_DIR=str(POLICIES)))  # the key file

    async def serve_once() -> None:  # the server makes the database; the command never does
        state = AppState.build(settings)
        await state.start()
        await state.stop()

    asyncio.run(serve_once())
    created = run_cli(tmp_path, "users", "create", "dana", key=None, settings=_env(database))
    assert created.returncode == 0, created.stderr
    made = sorted(path.name for path in tmp_path.iterdir())
    assert {"service.db", "service.db.secret"} <= set(made)
    assert {name: mode(tmp_path / name) for name in made} == {name: 0o600 for name in made}


@pytest.mark.sqlite_only
def test_serve_makes_the_database_its_side_files_and_the_key_private(
    tmp_path: Path, umask: int
) -> None:
    database = tmp_path / "data" / "service.db"
    database.parent.mkdir()
    server = ServerProcess(tmp_path / "server", f"sqlite+aiosqlite:///{database}", "unused")
    del server.env["MG_SECRET_KEY"]  # the key is generated beside the database
    server.start()
    try:
        # Bootstrapping wrote to the database: its WAL files are open beside it.
        made = sorted(path.name for path in database.parent.iterdir())
        assert made == ["service.db", "service.db-shm", "service.db-wal", "service.db.secret"]
        assert {name: mode(database.parent / name) for name in made} == {
            name: 0o600 for name in made
        }
    finally:
        server.stop()


def test_each_database_gets_its_own_key(tmp_path: Path) -> None:
    one = load_settings(_env(tmp_path / "one.db")).secret_key
    two = load_settings(_env(tmp_path / "two.db")).secret_key
    assert one != two


def test_an_explicit_key_writes_no_file(tmp_path: Path) -> None:
    key = "configured-key-" + "c" * 32
    settings = load_settings(_env(tmp_path / "service.db", MG_SECRET_KEY=key))
    assert settings.secret_keys == (key,)
    assert list(tmp_path.iterdir()) == []


def test_a_key_file_put_there_by_hand_is_used(tmp_path: Path) -> None:
    key = "hand-made-key-" + "h" * 32
    (tmp_path / "service.db.secret").write_text(f"  {key} \n")
    assert load_settings(_env(tmp_path / "service.db")).secret_keys == (key,)


def test_commands_that_must_find_the_servers_key_never_make_one(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="MG_SECRET_KEY"):
        load_settings(_env(tmp_path / "service.db"), create_key=False)
    assert list(tmp_path.iterdir()) == []


def test_an_empty_key_file_is_refused_with_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "service.db.secret").write_text("\n")
    with pytest.raises(SettingsError, match="no usable key"):
        load_settings(_env(tmp_path / "service.db"))
