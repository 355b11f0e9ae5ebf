"""Without MG_SECRET_KEY the signing key is generated once beside the SQLite file."""

from __future__ import annotations

import stat
from pathlib import Path

from app.settings import load_settings


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


def test_the_generated_key_is_readable_by_its_owner_only(tmp_path: Path) -> None:
    load_settings(_env(tmp_path / "service.db"))
    mode = stat.S_IMODE((tmp_path / "service.db.secret").stat().st_mode)
    assert mode == 0o600


def test_each_database_gets_its_own_key(tmp_path: Path) -> None:
    one = load_settings(_env(tmp_path / "one.db")).secret_key
    two = load_settings(_env(tmp_path / "two.db")).secret_key
    assert one != two


def test_an_explicit_key_writes_no_file(tmp_path: Path) -> None:
    settings = load_settings(_env(tmp_path / "service.db", MG_SECRET_KEY="configured-key"))
    assert settings.secret_keys == ("configured-key",)
    assert list(tmp_path.iterdir()) == []


def test_a_key_file_put_there_by_hand_is_used(tmp_path: Path) -> None:
    (tmp_path / "service.db.secret").write_text("  hand-made-key \n")
    assert load_settings(_env(tmp_path / "service.db")).secret_keys == ("hand-made-key",)
