"""`load_settings` from a mapping: the spec's defaults, bad values, key rotation.

Every test names MG_SECRET_KEY or a non-file database, so none touches the disk (the key
file generated beside a SQLite file is tested in tests/integration/test_settings_files.py).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from app.settings import Settings, SettingsError, load_settings, sqlite_path

KEY = "unit-test-secret-key-0123456789abcdef0123456789"
NUMBERS = {
    "MG_MACHINE_TIMEOUT": "machine_timeout",
    "MG_MAX_MACHINES_PER_GROUP": "max_machines_per_group",
    "MG_MAX_QUEUED_RUNS": "max_queued_runs",
    "MG_MAX_QUEUE_SECONDS": "max_queue_seconds",
    "MG_MAX_RUN_SECONDS": "max_run_seconds",
}


def load(**env: str) -> Settings:
    return load_settings({"MG_SECRET_KEY": KEY, **env})


def test_defaults_are_the_specs() -> None:
    settings = load()
    assert settings.database_url == "sqlite+aiosqlite:///machine-groups.db"
    assert settings.is_sqlite
    # "a SQLite file in the working directory"
    assert sqlite_path(settings.database_url) == Path("machine-groups.db")
    assert settings.policy_dir == Path("policies")
    assert settings.default_region == "us"
    assert settings.machine_timeout == 30
    assert settings.max_machines_per_group == 50
    assert settings.max_queued_runs == 500
    assert settings.max_queue_seconds == 10800
    assert settings.max_run_seconds == 86400
    assert settings.graphiql is True


def test_blank_values_mean_the_default() -> None:
    blank = dict.fromkeys(
        [*NUMBERS, "MG_DATABASE_URL", "MG_POLICY_DIR", "MG_DEFAULT_REGION", "MG_GRAPHIQL"], " "
    )
    assert load(**blank) == load()


def test_every_setting_is_read_from_its_variable() -> None:
    settings = load(
        MG_DATABASE_URL="sqlite+aiosqlite:////var/lib/mg/state.db",
        MG_POLICY_DIR="/etc/mg/policies",
        MG_DEFAULT_REGION="eu",
        MG_MACHINE_TIMEOUT="45",
        MG_MAX_MACHINES_PER_GROUP="7",
        MG_MAX_QUEUED_RUNS="9",
        MG_MAX_QUEUE_SECONDS="60",
        MG_MAX_RUN_SECONDS="120",
        MG_GRAPHIQL="false",
    )
    assert settings == Settings(
        database_url="sqlite+aiosqlite:////var/lib/mg/state.db",
        secret_keys=(KEY,),
        policy_dir=Path("/etc/mg/policies"),
        default_region="eu",
        machine_timeout=45,
        max_machines_per_group=7,
        max_queued_runs=9,
        max_queue_seconds=60,
        max_run_seconds=120,
        graphiql=False,
    )


@pytest.mark.parametrize("variable", sorted(NUMBERS))
@pytest.mark.parametrize("raw", ["abc", "1.5", "0", "-5", "30s"])
def test_a_bad_number_is_refused_naming_the_variable(variable: str, raw: str) -> None:
    with pytest.raises(SettingsError, match=variable):
        load(**{variable: raw})


@pytest.mark.parametrize("variable", sorted(NUMBERS))
def test_numbers_may_carry_spaces(variable: str) -> None:
    assert getattr(load(**{variable: " 12 "}), NUMBERS[variable]) == 12


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"MG_GRAPHIQL": "false"}, False),
        ({"MG_GRAPHIQL": "0"}, False),
        ({"MG_GRAPHIQL": "TRUE"}, True),
        ({"MG_ENV": "production"}, False),
        ({"MG_ENV": "production", "MG_GRAPHIQL": "true"}, True),
        ({"MG_ENV": "staging"}, True),
    ],
)
def test_graphiql_is_on_unless_turned_off_or_in_production(
    env: dict[str, str], expected: bool
) -> None:
    assert load(**env).graphiql is expected


def test_a_bad_flag_is_refused() -> None:
    with pytest.raises(SettingsError, match="MG_GRAPHIQL"):
        load(MG_GRAPHIQL="maybe")


def test_comma_separated_keys_give_several_keys_the_first_signing() -> None:
    new, old, older = "new-" + "k" * 32, "old-" + "k" * 32, "older-" + "k" * 32
    settings = load(MG_SECRET_KEY=f" {new} , {old},, {older} ")
    assert settings.secret_keys == (new, old, older)
    assert settings.secret_key == new


def test_a_short_secret_key_is_refused() -> None:
    with pytest.raises(SettingsError, match="shorter than 32"):
        load(MG_SECRET_KEY="x" * 40 + ",short")


def test_a_database_that_is_not_a_file_needs_an_explicit_key() -> None:
    for url in ("postgresql+asyncpg://mg@db/mg", "sqlite+aiosqlite:///:memory:"):
        with pytest.raises(SettingsError, match="MG_SECRET_KEY"):
            load_settings({"MG_DATABASE_URL": url})
        with pytest.raises(SettingsError, match="MG_SECRET_KEY"):
            load_settings({"MG_DATABASE_URL": url, "MG_SECRET_KEY": " , "})
    assert load(MG_DATABASE_URL="postgresql+asyncpg://mg@db/mg").is_sqlite is False
