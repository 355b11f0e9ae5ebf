"""A claim, an offer, a completion and the sweeper's pass find their rows by index, on
SQLite and PostgreSQL: no scan of runs, machines, machine_groups or audit_entries, and no
sort of rows read from them (a claim reads the head of each of its two queues).

They run in-process on the growth world at 1x (tests/growth_world.py), as its agent
claims from the group whose queue holds 500 runs, and each statement they send is
explained with the parameters it was sent with. The service has been up for a day, so
the sweeper's pass also looks for lost machines, and a second pass for machines that
went offline since the first and for lost ones among them only.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.engine import make_url

from app.db.models import Machine, ServerLife
from app.domain.run_life import changes
from app.queue import dispatch
from app.queue.sweeper import sweep
from app.state import AppState
from tests.databases import fresh_database
from tests.growth_world import World, seed, settings_for
from tests.plans import (
    postgres_plans,
    postgres_scans,
    postgres_sorts_of_tables,
    sqlite_plan_steps,
    sqlite_scans,
    sqlite_sorts_of_tables,
)
from tests.served import Sent

PHASES = ("claim", "complete", "offer", "sweep")


@dataclass(frozen=True)
class Recorded:
    url: str
    sent: dict[str, list[Sent]]  # by phase

    def statements(self, phase: str) -> list[Sent]:
        """The phase's statements that find rows (transaction control aside)."""
        finding = ("SELECT", "UPDATE", "DELETE", "WITH")
        return [
            one
            for one in self.sent[phase]
            if one.statement.lstrip().split(None, 1)[0].upper() in finding
        ]

    @property
    def sqlite_path(self) -> str | None:
        url = make_url(self.url)
        return url.database or "" if url.get_backend_name() == "sqlite" else None


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Recorded]:
    with fresh_database(tmp_path_factory.mktemp("claims")) as url:
        world = seed(url, 1, datetime.now(UTC).replace(microsecond=0))
        yield Recorded(url, asyncio.run(_record(url, world)))


async def _record(url: str, world: World) -> dict[str, list[Sent]]:
    state = AppState.build(settings_for(url))
    await state.start()
    sent: dict[str, list[Sent]] = {phase: [] for phase in PHASES}
    phase = PHASES[0]

    def record(_c: Any, _cursor: Any, statement: str, parameters: Any, *_rest: Any) -> None:
        sent[phase].append(Sent(statement, parameters))

    # Reads, writes on the loop and writes that wait: every engine of the service.
    engines = [engine.sync_engine for engine in state.db._engines]
    try:
        now = state.services.clock.now()
        async with state.transaction() as session:
            # Up for a day: the pass expires runs of machines silent for the timeout.
            day = timedelta(days=1)
            session.add(ServerLife(id="a-day-ago", started_at=now - day, alive_at=now))
        async with state.db.read() as session:
            machine = await session.get(Machine, world.agent_machine_id)
        assert machine is not None
        for engine in engines:
            event.listen(engine, "before_cursor_execute", record)
        run = await dispatch.claim_next_run(state.hub, machine, 0, None)
        assert run is not None and run.group_id == world.queue_group_id
        phase = "complete"
        async with state.transaction() as session:
            await changes.complete(
                session, machine.id, run.id, succeeded=True, output=None, message=None, now=now
            )
        phase = "offer"
        async with state.transaction() as session:
            # Another channel's: the statement is sent and hands nothing over.
            assert await changes.offer(session, machine.id, "not-its-channel", now) is None
        phase = "sweep"
        await sweep(state.hub, await sweep(state.hub))
    finally:
        for engine in engines:
            event.remove(engine, "before_cursor_execute", record)
        await state.stop()
    return sent


def _plans(recorded: Recorded, phase: str) -> list[tuple[Sent, list[str], list[str], set[str]]]:
    """Each statement of the phase: (statement, its scans, its sorts, the indexes used)."""
    statements = recorded.statements(phase)
    path = recorded.sqlite_path
    found = []
    if path is not None:
        for one in statements:
            steps = sqlite_plan_steps(path, one)
            details = [step for _id, _parent, step in steps]
            indexes = {word for step in details for word in step.split() if "ix_" in word}
            found.append((one, sqlite_scans(details), sqlite_sorts_of_tables(steps), indexes))
        return found
    plans = asyncio.run(postgres_plans(recorded.url, statements))
    for one, plan in zip(statements, plans, strict=True):
        found.append((one, postgres_scans(plan), postgres_sorts_of_tables(plan), _indexes(plan)))
    return found


def _indexes(node: dict[str, Any]) -> set[str]:
    names = {node["Index Name"]} if "Index Name" in node else set()
    for child in node.get("Plans", []):
        names |= _indexes(child)
    return names


def _sent(recorded: Recorded, phase: str, start: str) -> list[str]:
    return [
        " ".join(one.statement.split())
        for one in recorded.statements(phase)
        if " ".join(one.statement.split()).startswith(start)
    ]


def test_each_phase_sent_the_statements_explained_here(recorded: Recorded) -> None:
    assert _sent(recorded, "claim", "UPDATE runs SET status=")
    assert _sent(recorded, "complete", "UPDATE runs SET output=")
    assert _sent(recorded, "offer", "UPDATE runs SET status=")
    # Expiries: queued and running too long, stale offers, lost machines; then the
    # second pass's machines that went offline.
    assert len(_sent(recorded, "sweep", "UPDATE runs SET")) == 8
    assert len(_sent(recorded, "sweep", "SELECT machines.group_id FROM machines")) == 1


@pytest.mark.parametrize("phase", PHASES)
def test_no_statement_scans_or_sorts_a_growing_table(recorded: Recorded, phase: str) -> None:
    found = {
        one.statement[:300]: (scans, sorts)
        for one, scans, sorts, _indexes in _plans(recorded, phase)
        if scans or sorts
    }
    assert found == {}


@pytest.mark.parametrize("phase", ["claim", "offer"])
def test_a_hand_over_reads_the_head_of_each_queue_on_its_dispatch_index(
    recorded: Recorded, phase: str
) -> None:
    """Its group's queue and its own, each in dispatch order: one row of each."""
    (hand_over,) = [
        indexes
        for one, _scans, _sorts, indexes in _plans(recorded, phase)
        if one.statement.lstrip().startswith("UPDATE")
    ]
    assert {"ix_runs_group_dispatch", "ix_runs_target_dispatch"} <= hand_over


def test_the_sweeper_finds_machines_gone_offline_in_a_range_of_heartbeats(
    recorded: Recorded,
) -> None:
    (offline,) = [
        indexes
        for one, _scans, _sorts, indexes in _plans(recorded, "sweep")
        if one.statement.lstrip().startswith("SELECT machines.group_id")
    ]
    assert "ix_machines_last_seen_at" in offline


def test_the_second_pass_looks_for_lost_machines_among_those_gone_silent_since(
    recorded: Recorded,
) -> None:
    """The first pass checks every running run's machine; the next reads a range of
    heartbeats, then the running runs of those machines alone."""
    lost = [
        indexes
        for one, _scans, _sorts, indexes in _plans(recorded, "sweep")
        if one.statement.lstrip().startswith("UPDATE runs") and "last_seen_at" in one.statement
    ]
    assert len(lost) == 2, lost
    # Each machine's running run: by machine and status, or on PostgreSQL by the partial
    # index that holds at most one running run per machine.
    by_machine = {"ix_runs_machine_status", "ux_runs_one_running_per_machine"}
    assert "ix_machines_last_seen_at" in lost[1] and by_machine & lost[1], lost[1]


def test_the_sort_finders_see_sorts_of_tables() -> None:
    """The checks above are not vacuous: the claim's old plan sorted every queued run."""
    old_claim = [
        (1, 0, "SEARCH runs USING INDEX ix_runs_status_started (status=?)"),
        (2, 0, "USE TEMP B-TREE FOR ORDER BY"),
    ]
    assert sqlite_sorts_of_tables(old_claim) == ["USE TEMP B-TREE FOR ORDER BY"]
    heads = [
        (1, 0, "CO-ROUTINE heads"),
        (2, 1, "SEARCH runs USING COVERING INDEX ix_runs_group_dispatch (group_id=?)"),
        (3, 0, "SCAN heads"),
        (4, 0, "USE TEMP B-TREE FOR ORDER BY"),
    ]
    assert sqlite_sorts_of_tables(heads) == []
    read = {"Node Type": "Index Scan", "Relation Name": "runs", "Index Cond": "(status = $1)"}
    assert postgres_sorts_of_tables({"Node Type": "Sort", "Plans": [read]}) != []
    head = {"Node Type": "Limit", "Plans": [read]}
    two = {"Node Type": "Append", "Plans": [head, head]}
    assert postgres_sorts_of_tables({"Node Type": "Sort", "Plans": [two]}) == []
