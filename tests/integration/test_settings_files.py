"""Without MG_SECRET_KEY the signing key is generated once beside the SQLite file."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from app.settings import SettingsError, load_settings


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
    key = "configured-key-" + "c" * 32
    settings = load_settings(_env(tmp_path / "service.db", MG_SECRET_KEY=key))
    assert settings.secret_keys == (key,)
    assert list(tmp_path.iterdir()) == []


def test_a_key_file_put_there_by_hand_is_used(tmp_path: Path) -> None:
    key = "hand-made-key-" + "h" * 32
    (tmp_path / "service.db.secret").write_text(f"  {key} \n")
    assert load_settings(_env(tmp_path / "service.db")).secret_keys == (key,)


def test_an_empty_key_file_is_refused_with_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "service.db.secret").write_text("\n")
    with pytest.raises(SettingsError, match="no usable key"):
        load_settings(_env(tmp_path / "service.db"))
