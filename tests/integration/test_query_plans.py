"""Statements that run all the time must not read whole tables: SQLite's query plans."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.dialects import sqlite
from sqlmodel import col

from app.db.migrate import upgrade
from app.db.models import MachineGroup
from app.domain.queue import (
    GROUP_QUEUE,
    MACHINE_QUEUE,
    _loads_of,
    _positions,
    _queued_page,
    _recent_finished,
)
from app.domain.run_life.statements import (
    MACHINE_LOST,
    MACHINE_LOST_SINCE,
    QUEUED_TOO_LONG,
    RUNNING_TOO_LONG,
)
from app.domain.visibility import _groups_anywhere, _groups_in
from app.queue.uptime import _LIVES_SINCE, _STILL_ALIVE

pytestmark = pytest.mark.sqlite_only


def _plan(path: Path, statement: Any) -> list[str]:
    # IN lists are rendered with one parameter per value, as they are sent.
    compiled = statement.compile(
        dialect=sqlite.dialect(), compile_kwargs={"render_postcompile": True}
    )
    # RETURNING does not change how rows are found, and EXPLAIN does not take it.
    sql = str(compiled).split(" RETURNING ")[0]
    with sqlite3.connect(path) as db:
        rows = db.execute(f"EXPLAIN QUERY PLAN {sql}", [None] * len(compiled.positiontup or []))
        return [detail for *_ids, detail in rows]


@pytest.fixture
def migrated(tmp_path: Path) -> Path:
    path = tmp_path / "plans.db"
    upgrade(f"sqlite+aiosqlite:///{path}")
    return path


@pytest.mark.parametrize(
    ("statement", "table"),
    [
        (QUEUED_TOO_LONG, "runs"),
        (RUNNING_TOO_LONG, "runs"),
        (MACHINE_LOST, "runs"),
        # After the first pass: a range of heartbeats, then each such machine's runs.
        (MACHINE_LOST_SINCE, "runs"),
        # Each pass marks this server alive and reads the lives that say since when the
        # service has been up.
        (_STILL_ALIVE, "server_lives"),
        (_LIVES_SINCE, "server_lives"),
    ],
)
def test_the_sweeper_finds_overdue_runs_without_reading_whole_tables(
    migrated: Path, statement: Any, table: str
) -> None:
    plan = _plan(migrated, statement)
    assert any(step.startswith(f"SEARCH {table} USING INDEX") for step in plan), plan
    # Nor any other table: the lost machines' expiry looks up each running run's machine.
    assert not any(step.startswith("SCAN") for step in plan), plan


def test_whether_a_viewer_sees_a_group_is_one_probe_of_their_grant_on_it(migrated: Path) -> None:
    """Lists decide row by row (a page stops once full): a probe of one grant, not a list
    of all the viewer's grants."""
    statement = select(col(MachineGroup.id)).where(_groups_anywhere("viewer", ()))
    plan = _plan(migrated, statement)
    probe = "(record_kind=? AND record_id=? AND user_id=?)"
    assert any(step.startswith("SEARCH grants") and probe in step for step in plan), plan


def test_a_group_page_is_counted_from_the_viewers_own_grants(migrated: Path) -> None:
    plan = _plan(migrated, _groups_in("viewer", False, "environment").total)
    assert any("grants USING COVERING INDEX ix_grants_user (user_id=?" in step for step in plan)
    # "SCAN CONSTANT ROW" is the sum of the two counts, not a table.
    assert not any(step.startswith("SCAN machine_groups") for step in plan), plan


QUEUES = [(GROUP_QUEUE, "g1"), (GROUP_QUEUE, "g2"), (MACHINE_QUEUE, "m1")]
BY_QUEUE = ("(group_id=? AND status=?)", "(target_machine_id=? AND status=?)")
NEWEST_FINISHED = ("(group_id=? AND finished_at>?)", "(target_machine_id=? AND finished_at>?)")


@pytest.mark.parametrize(
    ("statement", "searches"),
    [
        (_queued_page(["g1", "g2"], 100), BY_QUEUE[:1]),
        (_positions(QUEUES, ["r1", "r2"]), BY_QUEUE),
        (_recent_finished(QUEUES), NEWEST_FINISHED),
        (_loads_of(QUEUES), BY_QUEUE),
    ],
    ids=["queues", "positions", "recent-finished", "loads"],
)
def test_queue_reads_search_only_the_queues_asked_about(
    migrated: Path, statement: Any, searches: tuple[str, ...]
) -> None:
    """Positions, estimates and queues of many runs read the queued runs of each queue
    involved (at most MG_MAX_QUEUED_RUNS), and the newest end of its history: never all
    queued runs, nor a queue's whole history (which grows without bound)."""
    plan = _plan(migrated, statement)
    runs = [step for step in plan if step.startswith("SEARCH runs")]
    assert {search for search in searches if any(search in step for step in runs)} == set(
        searches
    ), plan
    assert all(any(search in step for search in searches) for step in runs), plan
    # Scanning a subquery (a co-routine) reads its own rows, not a table.
    subqueries = {step.removeprefix("CO-ROUTINE ") for step in plan if "CO-ROUTINE" in step}
    scans = {step.removeprefix("SCAN ") for step in plan if step.startswith("SCAN")}
    assert scans <= subqueries, plan
