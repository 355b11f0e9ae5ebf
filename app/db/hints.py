"""Two ways to keep SQLite's plan of a statement on the rows a viewer owns.

SQLite's planner has no statistics here (the service never runs ANALYZE) and guesses:
an equality on any indexed column looks selective, so `machines.group_id IS NULL` or
`runs.status = 'FAILED'` may be picked to drive a statement and read a quarter of the
machines, or every failed run, where the viewer's own ids (their grants, their queues)
lead to a few rows. Both helpers leave PostgreSQL's statement as it is: it plans from
its statistics (and has no unary `+` on text).

- `unindexed(column)`: SQLite's documented way to rule a term out of index use, the
  unary `+` (`+machines.group_id IS NULL` is the same test, checked on the rows the
  other terms found).
- `drive_from(left, right, on)`: a join whose left side SQLite must read first (`CROSS
  JOIN`: the documented way to fix the order of a join), so that a few queues lead to
  their runs, not every run of a status to a queue.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Table
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.sql.selectable import CTE, Join


class unindexed(FunctionElement[Any]):
    """`column`, which SQLite may filter by but not search an index on."""

    name = "unindexed"
    inherit_cache = True

    def __init__(self, column: Any) -> None:
        super().__init__(column)
        self.type = column.type


@compiles(unindexed)
def _as_is(element: unindexed, compiler: SQLCompiler, **kw: Any) -> str:
    return str(compiler.process(element.clauses, **kw))


@compiles(unindexed, "sqlite")
def _unary_plus(element: unindexed, compiler: SQLCompiler, **kw: Any) -> str:
    return "+" + str(compiler.process(element.clauses, **kw))


class _DrivenJoin(Join):
    inherit_cache = True


def drive_from(left: CTE | Table, right: Any, on: Any) -> Join:
    """`left JOIN right ON on`, with `left` (a table or a CTE: named, not spelled out in
    the join) read first on SQLite."""
    return _DrivenJoin(left, right, on)


@compiles(_DrivenJoin)
def _join(element: _DrivenJoin, compiler: SQLCompiler, **kw: Any) -> str:
    return str(compiler.visit_join(element, **kw))  # type: ignore[no-untyped-call]


@compiles(_DrivenJoin, "sqlite")
def _cross_join(element: _DrivenJoin, compiler: SQLCompiler, **kw: Any) -> str:
    # The left side is a name, so the first JOIN is this one. (SQLite takes an ON clause
    # with CROSS JOIN.)
    joined = compiler.visit_join(element, **kw)  # type: ignore[no-untyped-call]
    left, join, rest = str(joined).partition(" JOIN ")
    assert join, left
    return f"{left} CROSS JOIN {rest}"
