"""Fixtures shared by every kind of test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from app.domain.clock import ManualClock
from app.settings import Settings

REPO = Path(__file__).resolve().parent.parent
POLICIES = REPO / "policies"


@pytest.fixture
def clock() -> ManualClock:
    """A clock the test moves by hand."""
    return ManualClock()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Settings for a fresh SQLite file in the test's own folder."""
    return Settings(
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'test.db'}",
        secret_keys=("test-secret-key-0123456789abcdef0123456789",),
        policy_dir=POLICIES,
        # Tests sweep when they choose (`sweep(server.state)`), on their ManualClock.
        sweep_interval=3600,
    )


@pytest.fixture
def policies() -> Iterator[Path]:
    """The policy folder the repository ships."""
    yield POLICIES
