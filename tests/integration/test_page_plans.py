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
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest
from sqlalchemy.engine import make_url

from tests.databases import fresh_database
from tests.growth_world import World, page_requests, second_pages, seed, settings_for
from tests.plans import postgres_plans, postgres_scans, sqlite_plan, sqlite_scans
from tests.served import Sent, serve


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
                scans = sqlite_scans(sqlite_plan(url.database or "", one))
                if scans:
                    found.setdefault(label, []).append(f"{scans}: {one.statement[:300]}")
        else:
            plans = asyncio.run(postgres_plans(explained.url, reads))
            for one, plan in zip(reads, plans, strict=True):
                scans = postgres_scans(plan)
                if scans:
                    found.setdefault(label, []).append(f"{scans}: {one.statement[:300]}")
    assert found == {}


def test_the_scan_finders_see_scans() -> None:
    """The checks above are not vacuous."""
    assert sqlite_scans(["SCAN runs", "SEARCH runs USING INDEX ix_runs_group_status (a=?)"]) == [
        "SCAN runs"
    ]
    assert sqlite_scans(["SCAN machines USING INDEX ix_machines_owner_id"]) != []
    assert sqlite_scans(["SCAN runs USING INDEX ix_runs_enqueued_at", "SCAN page"]) == []
    seq = {"Node Type": "Seq Scan", "Relation Name": "runs"}
    assert postgres_scans({"Node Type": "Limit", "Plans": [seq]}) != []
    walk = {"Node Type": "Index Scan", "Relation Name": "runs", "Index Name": "ix_runs_enqueued_at"}
    assert postgres_scans({"Node Type": "Limit", "Plans": [walk]}) == []
    assert postgres_scans(walk) != []
