"""What each page, its count and a group's queue make the database do stays flat as the
data grows: the same requests on the growth world at 1x and at 10x (tests/growth_world.py)
cost about the same work, measured where it is deterministic.

SQLite: the virtual machine instructions of every statement a request sent, replayed on
the same file (a progress handler counts them). PostgreSQL: the rows its plans read
from tables and indexes (returned or filtered out, each time a scan ran), from EXPLAIN
ANALYZE on the analysed world, with plans that find rows by index (as the page plans
test prices out sequential scans and hash joins: on a world this small the planner
rightly reads a whole table of 1,000 groups rather than look 51 up, which at 100x it
does not). Pages touched would count each index's depth, which grows (slowly) with
the data. Times are left to the benchmark (bench/growth.py): on a shared machine they
vary more than the factor tested here.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from tests.databases import fresh_database
from tests.growth_world import page_requests, seed, settings_for
from tests.served import Sent, serve

SCALES = (1, 10)
# Deeper indexes cost a little more at 10x; anything that reads in proportion to the
# data costs about ten times more. Small requests may add a constant.
FACTOR, SLACK = 1.5, {"sqlite": 2_000, "postgresql": 100}
# Lists shorter at 1x than COUNT_LIMIT (the operator is the subject of half of the trail;
# each kind is a quarter of it): their exact count grows up to that limit, then stays flat.
EXACT_AT_1X = {"auditLog(userId)", "auditLog(kind: [...])"}


@dataclass(frozen=True)
class Costs:
    backend: str
    work: dict[int, dict[str, int]]  # scale -> request -> work


@pytest.fixture(scope="module")
def costs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Costs]:
    work: dict[int, dict[str, int]] = {}
    backend = ""
    anchor = datetime.now(UTC).replace(microsecond=0)
    for scale in SCALES:
        with fresh_database(tmp_path_factory.mktemp(f"x{scale}")) as url:
            world = seed(url, scale, anchor)
            served = serve(settings_for(url), page_requests(world))
            backend = make_url(url).get_backend_name()
            work[scale] = {
                label: _work(url, [one for one in sent if one.is_read])
                for label, sent in served.sent.items()
            }
    yield Costs(backend, work)


def _work(url: str, sent: list[Sent]) -> int:
    if make_url(url).get_backend_name() == "sqlite":
        return _sqlite_instructions(make_url(url).database or "", sent)
    return asyncio.run(_postgres_rows(url, sent))


def _sqlite_instructions(path: str, sent: list[Sent]) -> int:
    steps = 0

    def tick() -> int:
        nonlocal steps
        steps += 10
        return 0

    db = sqlite3.connect(Path(path))
    try:
        db.set_progress_handler(tick, 10)
        for one in sent:
            db.execute(one.statement, one.parameters).fetchall()
    finally:
        db.close()
    return steps


async def _postgres_rows(url: str, sent: list[Sent]) -> int:
    dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    connection = await asyncpg.connect(dsn)
    try:
        for setting in ("enable_seqscan", "enable_hashjoin", "enable_mergejoin"):
            await connection.execute(f"SET {setting} = off")
        rows = 0
        for one in sent:
            statement = f"EXPLAIN (ANALYZE, FORMAT JSON) {one.statement}"
            raw = await connection.fetchval(statement, *(one.parameters or ()))
            rows += _rows_read(json.loads(raw)[0]["Plan"])
        return rows
    finally:
        await connection.close()


def _rows_read(node: dict[str, Any]) -> int:
    """Rows the scans of a plan read: returned or filtered out, in every loop."""
    read = 0
    if node.get("Relation Name") and "Scan" in node["Node Type"]:
        kept = node.get("Actual Rows", 0)
        dropped = node.get("Rows Removed by Filter", 0) + node.get(
            "Rows Removed by Index Recheck", 0
        )
        read = int((kept + dropped) * node.get("Actual Loops", 1))
    return read + sum(_rows_read(child) for child in node.get("Plans", []))


def test_each_request_costs_about_the_same_at_10x_the_data(costs: Costs) -> None:
    small, large = (costs.work[scale] for scale in SCALES)
    slack = SLACK[costs.backend]
    grown = {
        label: (small[label], large[label])
        for label in small
        if label not in EXACT_AT_1X and large[label] > small[label] * FACTOR + slack
    }
    assert grown == {}, f"work at 1x, 10x ({costs.backend})"


def test_the_measure_sees_work_that_grows(costs: Costs) -> None:
    """Not vacuous: the pages do work, and the exact count below the limit grows."""
    small, large = (costs.work[scale] for scale in SCALES)
    assert all(small[label] > 0 for label in small)
    assert all(large[exact] > small[exact] * FACTOR for exact in EXACT_AT_1X)
