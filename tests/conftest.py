"""Fixtures shared by every kind of test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from app.domain.clock import ManualClock
from app.settings import Settings
from tests.databases import fresh_database

REPO = Path(__file__).resolve().parent.parent
POLICIES = REPO / "policies"


@pytest.fixture
def clock() -> ManualClock:
    """A clock the test moves by hand."""
    return ManualClock()


@pytest.fixture
def database_url(tmp_path: Path) -> Iterator[str]:
    """A fresh database: a SQLite file, or a PostgreSQL database under MG_TEST_POSTGRES_URL."""
    with fresh_database(tmp_path) as url:
        yield url


@pytest.fixture
def settings(database_url: str) -> Settings:
    """Settings for the test's own fresh database."""
    return Settings(
        database_url=database_url,
        secret_keys=("test-secret-key-0123456789abcdef0123456789",),
        policy_dir=POLICIES,
        # Tests sweep when they choose (`sweep(server.state)`), on their ManualClock.
        sweep_interval=3600,
    )


@pytest.fixture
def policies() -> Iterator[Path]:
    """The policy folder the repository ships."""
    yield POLICIES
