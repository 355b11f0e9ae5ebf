"""Query plans of the statements a request or a pass sent, on SQLite and PostgreSQL, and
the steps of them that read a growing table whole (shared by the plan tests)."""

from __future__ import annotations

import json
import re
import sqlite3
from typing import Any

import asyncpg
from sqlalchemy.engine import make_url

from tests.served import Sent

GROWING = ("runs", "machines", "machine_groups", "audit_entries")
# The indexes a page walks from one end in its order, stopping once full: the newest
# runs, the newest audit entries. Every other read of a growing table is a search.
ORDERED_WALKS = {"ix_runs_enqueued_at", "ix_audit_entries_at"}


def sqlite_plan_steps(path: str, sent: Sent) -> list[tuple[int, int, str]]:
    """SQLite's plan of a statement as sent: (id, parent id, step) each."""
    # RETURNING does not change how rows are found, and EXPLAIN does not take it.
    statement = sent.statement.split(" RETURNING ")[0]
    with sqlite3.connect(path) as db:
        rows = db.execute(f"EXPLAIN QUERY PLAN {statement}", sent.parameters)
        return [(step_id, parent, detail) for step_id, parent, _unused, detail in rows]


def sqlite_plan(path: str, sent: Sent) -> list[str]:
    """SQLite's plan of a statement as sent, its steps in order."""
    return [detail for _id, _parent, detail in sqlite_plan_steps(path, sent)]


_SCAN = re.compile(r"^SCAN (\w+)(?: USING (?:COVERING )?INDEX (\w+))?")


def sqlite_scans(plan: list[str]) -> list[str]:
    """The plan's steps that read a growing table other than by a search or a walk."""
    scans = []
    for step in plan:
        match = _SCAN.match(step)
        if match and match.group(1) in GROWING and match.group(2) not in ORDERED_WALKS:
            scans.append(step)
    return scans


async def postgres_plans(url: str, sent: list[Sent]) -> list[dict[str, Any]]:
    """PostgreSQL's plan of each statement as sent, with whole-table reads priced out."""
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


def postgres_scans(node: dict[str, Any], limited: bool = False) -> list[str]:
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
        scans += postgres_scans(child, limited)
    return scans


def sqlite_sorts_of_tables(steps: list[tuple[int, int, str]]) -> list[str]:
    """The plan's sorts (temporary b-trees) of rows read from a growing table: a sort
    beside such a read in the same query, not one of a subquery's few rows."""
    reads = {
        parent
        for _id, parent, step in steps
        if step.startswith(("SEARCH ", "SCAN ")) and step.split()[1] in GROWING
    }
    return [step for _id, parent, step in steps if "TEMP B-TREE" in step and parent in reads]


def postgres_sorts_of_tables(node: dict[str, Any]) -> list[str]:
    """Sort nodes over a read of a growing table that no LIMIT below the sort bounds."""
    sorts = []
    if node["Node Type"] == "Sort" and _unbounded_read(node):
        sorts.append(f"Sort on {node.get('Sort Key')}")
    for child in node.get("Plans", []):
        sorts += postgres_sorts_of_tables(child)
    return sorts


def _unbounded_read(node: dict[str, Any]) -> bool:
    if node.get("Relation Name") in GROWING:
        return True
    return node["Node Type"] != "Limit" and any(map(_unbounded_read, node.get("Plans", [])))
