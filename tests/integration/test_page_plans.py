"""Every statement of every list page, of its totalCount and of a group's queue page finds
its rows by index, on SQLite and on PostgreSQL: no scan of runs, machines, machine_groups
or audit_entries, tables that grow without bound.

The pages are served in-process on the growth world at 1x (tests/growth_world.py), as
the viewers of the growth benchmark ask for them, plus their second pages and the other
filters; each statement they send is explained by the database with the parameters it
was sent with. A page walks one index in its own order and stops once full (its LIMIT):
that walk is the one "scan" allowed, of the indexes that order a list and of no other.
"""

from __future__ import annotations

import asyncio
import json
import re
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from tests.databases import fresh_database
from tests.growth_world import World, page_requests, second_pages, seed, settings_for
from tests.served import Sent, serve

GROWING = ("runs", "machines", "machine_groups", "audit_entries")
# The indexes a page walks from one end in its order, stopping once full: the newest
# runs, the newest audit entries. Every other read of a growing table is a search.
ORDERED_WALKS = {"ix_runs_enqueued_at", "ix_audit_entries_at"}


@dataclass(frozen=True)
class Explained:
    url: str
    world: World
    sent: dict[str, list[Sent]]


@pytest.fixture(scope="module")
def explained(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Explained]:
    with fresh_database(tmp_path_factory.mktemp("plans")) as url:
        world = seed(url, 1, datetime.now(UTC).replace(microsecond=0))
        settings = settings_for(url)
        first = serve(settings, page_requests(world))
        cursors = {
            label: page["pageInfo"]["endCursor"]
            for label, data in first.data.items()
            for page in data.values()
            if isinstance(page, dict) and page.get("pageInfo")
        }
        second = serve(settings, second_pages(world, cursors))
        yield Explained(url, world, {**first.sent, **second.sent})


def _sqlite_plan(path: str, sent: Sent) -> list[str]:
    with sqlite3.connect(path) as db:
        rows = db.execute(f"EXPLAIN QUERY PLAN {sent.statement}", sent.parameters)
        return [detail for *_ids, detail in rows]


_SCAN = re.compile(r"^SCAN (\w+)(?: USING (?:COVERING )?INDEX (\w+))?")


def _sqlite_scans(plan: list[str]) -> list[str]:
    """The plan's steps that read a growing table other than by a search or a walk."""
    scans = []
    for step in plan:
        match = _SCAN.match(step)
        if match and match.group(1) in GROWING and match.group(2) not in ORDERED_WALKS:
            scans.append(step)
    return scans


async def _postgres_plans(url: str, sent: list[Sent]) -> list[dict[str, Any]]:
    dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    connection = await asyncpg.connect(dsn)
    try:
        # Whether each statement can find its rows by index, whatever the sizes: with
        # sequential scans, hash and merge joins priced out, a plan that still reads a
        # whole table has no other way. (On a small world, the planner rightly prefers
        # to hash a table of 1,000 groups over 51 lookups; at 100x it does not. The
        # growth test, tests/integration/test_costs_flat.py, measures the plans chosen.)
        for setting in ("enable_seqscan", "enable_hashjoin", "enable_mergejoin"):
            await connection.execute(f"SET {setting} = off")
        plans = []
        for one in sent:
            raw = await connection.fetchval(
                f"EXPLAIN (FORMAT JSON) {one.statement}", *(one.parameters or ())
            )
            plans.append(json.loads(raw)[0]["Plan"])
        return plans
    finally:
        await connection.close()


def _postgres_scans(node: dict[str, Any], limited: bool = False) -> list[str]:
    """Nodes that read a growing table whole: a sequential scan, or an index scan with no
    condition, unless it walks an ordered list's index under a LIMIT."""
    scans = []
    relation = node.get("Relation Name")
    kind = node["Node Type"]
    if relation in GROWING:
        if kind == "Seq Scan":
            scans.append(f"{kind} on {relation}")
        elif (
            kind in ("Index Scan", "Index Only Scan")
            and "Index Cond" not in node
            and not (limited and node.get("Index Name") in ORDERED_WALKS)
        ):
            scans.append(f"{kind} on {relation} using {node.get('Index Name')}")
    limited = limited or kind == "Limit"
    for child in node.get("Plans", []):
        scans += _postgres_scans(child, limited)
    return scans


def test_every_request_was_served_and_sent_its_reads(explained: Explained) -> None:
    expected = {request.label for request in page_requests(explained.world)}
    assert expected <= set(explained.sent)
    assert any(label.endswith("page 2") for label in explained.sent)
    for label, sent in explained.sent.items():
        assert any(one.is_read for one in sent), label


def test_no_statement_of_a_page_its_count_or_a_queue_scans_a_growing_table(
    explained: Explained,
) -> None:
    found: dict[str, list[str]] = {}
    url = make_url(explained.url)
    for label, sent in explained.sent.items():
        reads = [one for one in sent if one.is_read]
        if url.get_backend_name() == "sqlite":
            for one in reads:
                scans = _sqlite_scans(_sqlite_plan(url.database or "", one))
                if scans:
                    found.setdefault(label, []).append(f"{scans}: {one.statement[:300]}")
        else:
            plans = asyncio.run(_postgres_plans(explained.url, reads))
            for one, plan in zip(reads, plans, strict=True):
                scans = _postgres_scans(plan)
                if scans:
                    found.setdefault(label, []).append(f"{scans}: {one.statement[:300]}")
    assert found == {}


def test_the_scan_finders_see_scans() -> None:
    """The checks above are not vacuous."""
    assert _sqlite_scans(["SCAN runs", "SEARCH runs USING INDEX ix_runs_group_status (a=?)"]) == [
        "SCAN runs"
    ]
    assert _sqlite_scans(["SCAN machines USING INDEX ix_machines_owner_id"]) != []
    assert _sqlite_scans(["SCAN runs USING INDEX ix_runs_enqueued_at", "SCAN page"]) == []
    seq = {"Node Type": "Seq Scan", "Relation Name": "runs"}
    assert _postgres_scans({"Node Type": "Limit", "Plans": [seq]}) != []
    walk = {"Node Type": "Index Scan", "Relation Name": "runs", "Index Name": "ix_runs_enqueued_at"}
    assert _postgres_scans({"Node Type": "Limit", "Plans": [walk]}) == []
    assert _postgres_scans(walk) != []
