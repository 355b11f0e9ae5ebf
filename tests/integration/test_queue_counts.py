"""A group's `queueStatus` counts are read in one statement: one snapshot of the queue.

Read as three statements, on PostgreSQL (a new snapshot per statement under READ
COMMITTED) a run claimed between them was counted running in one read and its machine
busy in another: a message said two machines online, one running, none idle.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import event

from app.db.models import Machine, MachineGroup, Run, new_id
from app.domain.clock import ManualClock
from app.domain.queue import QueueCounts, queue_counts
from app.domain.users import user_by_name
from app.settings import Settings
from app.state import AppState

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
TIMEOUT = 30


async def _counts(settings: Settings) -> tuple[QueueCounts, QueueCounts, int]:
    state = AppState.build(settings, ManualClock(NOW))
    await state.start()
    try:
        async with state.db.write() as session:
            admin = await user_by_name(session, "admin")
            assert admin is not None

            def named_group(name: str) -> MachineGroup:
                return MachineGroup(
                    environment_id=state.default_environment_id,
                    name=name,
                    name_key=name.lower(),
                    owner_id=admin.id,
                    created_at=NOW,
                )

            group, empty = named_group("Finance bots"), named_group("Empty")
            session.add_all([group, empty])
            await session.flush()

            def machine(name: str, seen: datetime) -> Machine:
                return Machine(
                    environment_id=state.default_environment_id,
                    name=name,
                    name_key=name.lower(),
                    owner_id=admin.id,
                    group_id=group.id,
                    key_hash=new_id(),
                    last_seen_at=seen,
                    created_at=NOW,
                )

            # Two online (one busy, one idle), one offline.
            busy, idle = machine("VM-1", NOW), machine("VM-2", NOW)
            gone = machine("VM-3", NOW - timedelta(seconds=TIMEOUT * 2))
            session.add_all([busy, idle, gone])
            await session.flush()

            def run(status: str, machine_id: str | None) -> Run:
                return Run(
                    flow_name="invoices",
                    status=status,
                    group_id=group.id,
                    machine_id=machine_id,
                    started_by_id=admin.id,
                    enqueued_at=NOW,
                    started_at=NOW if machine_id else None,
                    confirmed_at=NOW if machine_id else None,
                )

            session.add_all([run("RUNNING", busy.id), run("QUEUED", None), run("QUEUED", None)])
            session.add(run("SUCCEEDED", idle.id))

        sent: list[str] = []

        def record(*args: Any) -> None:
            if not str(args[2]).lstrip().upper().startswith("BEGIN"):
                sent.append(str(args[2]))

        engine = state.db.engine.sync_engine
        async with state.db.read() as session:
            event.listen(engine, "before_cursor_execute", record)
            try:
                counted = await queue_counts(session, group, NOW, TIMEOUT)
            finally:
                event.remove(engine, "before_cursor_execute", record)
            nothing = await queue_counts(session, empty, NOW, TIMEOUT)
        return counted, nothing, len(sent)
    finally:
        await state.stop()


def test_a_groups_counts_come_from_one_statement(settings: Settings) -> None:
    counted, nothing, statements = asyncio.run(_counts(settings))
    assert statements == 1
    assert counted == QueueCounts(queued=2, running=1, machines=3, online=2, idle=1)
    assert nothing == QueueCounts(queued=0, running=0, machines=0, online=0, idle=0)
