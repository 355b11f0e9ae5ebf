"""Migrations 0008, 0009, 0011 and 0012 (indexes that order the pages, read a viewer's own
queues, hand a queue's next run over and find machines gone offline), on SQLite and
PostgreSQL: each builds its indexes over existing rows and back, and on PostgreSQL it
builds them without stopping writes (CREATE INDEX CONCURRENTLY, app/db/online_index.py).
That 0012's priority column is descending shows in the claim's plan
(tests/integration/test_claim_plans.py): no sort."""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest
from alembic import command
from sqlalchemy import create_engine, inspect
from sqlalchemy.engine import make_url

from app.db.migrate import alembic_config, upgrade
from tests.databases import POSTGRES_URL

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)

# The columns of each index the two migrations change, before and after.
Columns = list[str] | None
CHANGED: dict[str, dict[str, tuple[Columns, Columns]]] = {
    "0008": {
        "ix_runs_enqueued_at": (["enqueued_at"], ["enqueued_at", "id"]),
        "ix_runs_status_enqueued": (["status", "enqueued_at"], ["status", "enqueued_at", "id"]),
        "ix_runs_group_status": (
            ["group_id", "status"],
            ["group_id", "status", "enqueued_at", "id"],
        ),
        "ix_runs_machine_status": (
            ["machine_id", "status"],
            ["machine_id", "status", "enqueued_at", "id"],
        ),
        "ix_runs_target_status": (
            ["target_machine_id", "status"],
            ["target_machine_id", "status", "enqueued_at", "id"],
        ),
        "ix_runs_group_enqueued": (None, ["group_id", "enqueued_at", "id"]),
    },
    "0009": {
        "ix_machines_environment_id": (["environment_id"], ["environment_id", "name_key", "id"]),
        "ix_machine_groups_owner_id": (["owner_id"], ["owner_id", "environment_id"]),
        "ix_audit_entries_at": (["at"], ["at", "id"]),
        "ix_audit_entries_kind": (["kind"], ["kind", "at", "id"]),
        "ix_audit_record": (["record_id", "at"], ["record_id", "at", "id"]),
        "ix_audit_actor": (["actor_id", "at"], ["actor_id", "at", "id"]),
        "ix_audit_subject": (["subject_user_id", "at"], ["subject_user_id", "at", "id"]),
    },
    "0011": {
        "ix_runs_target_enqueued": (None, ["target_machine_id", "enqueued_at", "id"]),
        "ix_runs_started_by": (None, ["started_by_id", "enqueued_at", "id"]),
    },
    "0012": {
        "ix_runs_group_dispatch": (
            None,
            ["group_id", "status", "priority", "enqueued_at", "id"],
        ),
        "ix_runs_target_dispatch": (
            None,
            ["target_machine_id", "status", "priority", "enqueued_at", "id"],
        ),
        "ix_machines_last_seen_at": (None, ["last_seen_at", "group_id"]),
    },
}
BEFORE = {"0008": "0007", "0009": "0008", "0011": "0010", "0012": "0011"}


def _indexes(url: str) -> dict[str, list[str]]:
    """Every index of the tables the migrations touch: name -> columns."""
    if make_url(url).get_backend_name() == "postgresql":
        return asyncio.run(_postgres_indexes(url))
    engine = create_engine(make_url(url).set(drivername="sqlite"))
    try:
        inspector = inspect(engine)
        return {
            str(index["name"]): [str(column) for column in index["column_names"]]
            for table in ("runs", "machines", "machine_groups", "audit_entries")
            for index in inspector.get_indexes(table)
        }
    finally:
        engine.dispose()


def _dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


async def _postgres_indexes(url: str) -> dict[str, list[str]]:
    connection = await asyncpg.connect(_dsn(url))
    try:
        rows = await connection.fetch(
            """
            SELECT i.relname AS name, x.indisvalid AS valid,
                   array_agg(a.attname ORDER BY k.ordinality) AS columns
            FROM pg_index x
            JOIN pg_class i ON i.oid = x.indexrelid
            JOIN pg_class t ON t.oid = x.indrelid
            CROSS JOIN LATERAL unnest(x.indkey) WITH ORDINALITY AS k(attnum, ordinality)
            JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = k.attnum
            WHERE t.relname IN ('runs', 'machines', 'machine_groups', 'audit_entries')
            GROUP BY i.relname, x.indisvalid
            """
        )
        assert all(row["valid"] for row in rows), [row["name"] for row in rows]
        return {row["name"]: list(row["columns"]) for row in rows}
    finally:
        await connection.close()


@pytest.mark.parametrize("revision", ["0008", "0009", "0011", "0012"])
def test_each_migration_changes_its_indexes_and_back(database_url: str, revision: str) -> None:
    config = alembic_config(database_url)
    command.upgrade(config, BEFORE[revision])
    before = _indexes(database_url)
    command.upgrade(config, revision)
    after = _indexes(database_url)
    for name, (old, new) in CHANGED[revision].items():
        assert (before.get(name), after.get(name)) == (old, new), name
    # Nothing else changed, nor is a half-built index left behind.
    untouched = {name: columns for name, columns in after.items() if name not in CHANGED[revision]}
    assert untouched == {k: v for k, v in before.items() if k not in CHANGED[revision]}
    command.downgrade(config, BEFORE[revision])
    assert _indexes(database_url) == before
    upgrade(database_url)


@pytest.mark.postgres_only
def test_on_postgresql_writes_go_on_while_an_index_is_built(database_url: str) -> None:
    """A writer's transaction is open on `runs` when 0008 starts: the build waits for it
    (as any build must), and meanwhile other writers still write. A plain CREATE INDEX
    would queue its lock behind the open transaction and every writer behind it."""
    assert POSTGRES_URL is not None
    command.upgrade(alembic_config(database_url), "0007")
    errors: list[BaseException] = []

    def migrate() -> None:
        try:
            command.upgrade(alembic_config(database_url), "0008")
        except BaseException as error:  # reported by the test below
            errors.append(error)

    async def scenario() -> tuple[float, bool]:
        dsn = _dsn(database_url)
        holder, writer = await asyncpg.connect(dsn), await asyncpg.connect(dsn)
        try:
            user = await _user(holder)
            holding = holder.transaction()
            await holding.start()
            await _insert_run(holder, user, "held")
            thread = threading.Thread(target=migrate)
            thread.start()
            await _until_an_index_build_waits(writer)
            await writer.execute("SET lock_timeout = '3s'")
            began = time.perf_counter()
            await _insert_run(writer, user, "written meanwhile")
            took = time.perf_counter() - began
            still_building = thread.is_alive()
            await holding.commit()
            await asyncio.get_running_loop().run_in_executor(None, thread.join, 60)
            return took, still_building
        finally:
            await holder.close()
            await writer.close()

    took, still_building = asyncio.run(scenario())
    assert errors == []
    assert still_building, "the build should have waited for the open transaction"
    assert took < 1.0
    assert _indexes(database_url)["ix_runs_group_enqueued"] == ["group_id", "enqueued_at", "id"]


async def _user(connection: Any) -> str:
    user_id = "migration-test-user"
    await connection.execute(
        "INSERT INTO users (id, name, name_key, premium, deactivated, created_at)"
        " VALUES ($1, $1, $1, false, false, $2)",
        user_id,
        NOW,
    )
    return user_id


async def _insert_run(connection: Any, user_id: str, flow: str) -> None:
    await connection.execute(
        "INSERT INTO runs (id, flow_name, status, priority, run_mode, started_by_id,"
        " enqueued_at) VALUES ($1, $2, 'QUEUED', 1, 'UNATTENDED', $3, $4)",
        f"run-{flow}",
        flow,
        user_id,
        NOW,
    )


async def _until_an_index_build_waits(connection: Any) -> None:
    for _ in range(300):
        waiting = await connection.fetchval(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE query ILIKE 'CREATE INDEX%' AND wait_event_type = 'Lock'"
        )
        if waiting:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("no index build was seen waiting")
