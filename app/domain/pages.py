"""Cursor pagination over what a viewer may see, ordered by name or newest first.

A list is read by one of two plans. The walk reads the list's own index in page order
and decides each row by probes (app/domain/visibility.py), stopping once the page is
full: its cost is the page's size divided by the share of rows the viewer sees. Reading
from the viewer's side (`Plan.OWN`) starts from their own records (what they own, their
grants) and sorts those: its cost is the number of records the viewer sees. A list that
has both picks one by its count, read first, from the viewer's side: at most OWN_LIMIT
records, their own; more, the walk.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from functools import lru_cache
from typing import Any, Generic, TypeVar, cast

from sqlalchemy import (
    ColumnElement,
    Result,
    Row,
    Select,
    bindparam,
    literal,
    select,
    tuple_,
    union_all,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased
from sqlmodel import col

from app.db.models import AuditEntry, Machine, MachineGroup, Run
from app.domain.access import Seen
from app.domain.counts import Total, bounded_union
from app.domain.errors import validation
from app.domain.visibility import FILTER_CACHE_SIZE, OWN_LIMIT, Visible

# MG_MAX_PAGE_SIZE (100 by default) is the cap the API enforces before executing
# (app/graphql/cost.py); the rules themselves refuse only what no setting may allow.
from app.settings import MAX_PAGE_SIZE

DEFAULT_PAGE_SIZE = 50
T = TypeVar("T")
U = TypeVar("U")
Named = TypeVar("Named", MachineGroup, Machine)
Timed = TypeVar("Timed", Run, AuditEntry)


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of rows with what the API's connection types need: `total_count` is
    exact when `total_exact`, else COUNT_LIMIT (there are more; app/domain/counts.py)."""

    items: Sequence[T]
    cursors: Sequence[str]
    has_next_page: bool
    total_count: int
    total_exact: bool = True

    def with_items(self, items: Sequence[U]) -> Page[U]:
        """The same page showing `items` (the same rows, seen or shaped for the API)."""
        return Page(items, self.cursors, self.has_next_page, self.total_count, self.total_exact)


def encode_cursor(*parts: str) -> str:
    """An opaque cursor from the sort key of a row."""
    return base64.urlsafe_b64encode("\x00".join(parts).encode()).decode()


def decode_cursor(cursor: str, parts: int) -> list[str]:
    """The sort key inside a cursor, or VALIDATION for one this service did not make."""
    try:
        values = base64.urlsafe_b64decode(cursor.encode()).decode().split("\x00")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        values = []
    if len(values) != parts:
        raise validation("the cursor is not valid", "after")
    return values


def check_page_size(first: int | None) -> int:
    """`first` between 0 and MAX_PAGE_SIZE (omitted or null: 50)."""
    if first is None:
        return DEFAULT_PAGE_SIZE
    if first < 0 or first > MAX_PAGE_SIZE:
        raise validation(f"first must be between 0 and {MAX_PAGE_SIZE}", "first")
    return first


class Plan(Enum):
    """How a page is read: walking the list in its order, or from the viewer's side."""

    WALK = "walk"
    OWN = "own"


def plan_for(counted: int) -> Plan:
    """The plan for a viewer who sees `counted` records (counted up to a limit above
    OWN_LIMIT): their own records while they are few, else the walk."""
    return Plan.OWN if counted <= OWN_LIMIT else Plan.WALK


@dataclass(frozen=True)
class ByName:
    """The statements of a list ordered by (name, id): its first page, a page after a
    cursor (each row with the list's total beside it), and the total alone. Bound
    parameters: `size`, `after_name`, `after_id`.

    A list that can be read from the viewer's side (`Visible.own`) has its pages without
    the total per plan (first page, next page): its total, read first, picks the plan."""

    first_page: Select[Any]
    next_page: Select[Any]
    total: Select[Any]
    plans: dict[Plan, tuple[Select[Any], Select[Any]]] | None = None


def by_name(selected: Select[Any], model: type[MachineGroup | Machine], visible: Visible) -> ByName:
    """The statements of a list of `selected` (rows of `model`) that the viewer sees."""
    sort_name, row_id = col(model.name_key), col(model.id)
    where, total = visible.where, visible.total
    cursor = tuple_(bindparam("after_name"), bindparam("after_id"))

    def paged(page: Select[Any], with_total: bool = True) -> Select[Any]:
        # The page's ids first, then its rows: whatever `selected` computes per row (counts
        # in subqueries) is computed for the page's rows only, not for every match before
        # the sort picks the page.
        ids = page.limit(bindparam("size")).subquery("page")
        # The sort key rides along under fixed names: the cursor of any kind of row.
        columns = [ids.c.name_key.label("sort_name"), ids.c.id.label("sort_id")]
        if with_total:
            columns.append(total.scalar_subquery().label("total_count"))
        return (
            selected.join(ids, ids.c.id == row_id)
            .order_by(ids.c.name_key, ids.c.id)
            .add_columns(*columns)
        )

    def walked(condition: ColumnElement[bool]) -> Select[Any]:
        rows = cast(Select[Any], select(row_id.label("id"), sort_name.label("name_key")))
        return rows.where(condition).order_by(sort_name, row_id)

    after_cursor = where & (tuple_(sort_name, row_id) > cursor)
    statements = ByName(paged(walked(where)), paged(walked(after_cursor)), total)
    if visible.own is None:
        return statements
    # The viewer's own records (at most OWN_LIMIT of them when this plan is chosen), sorted.
    own = visible.own.subquery("own_rows")
    mine = select(own.c.id, own.c.name_key).order_by(own.c.name_key, own.c.id)
    own_after = mine.where(tuple_(own.c.name_key, own.c.id) > cursor)
    plans = {
        Plan.WALK: (paged(walked(where), False), paged(walked(after_cursor), False)),
        Plan.OWN: (paged(mine, False), paged(own_after, False)),
    }
    return ByName(statements.first_page, statements.next_page, total, plans)


# What a list shows is one of the cached visibility filters (app/domain/visibility.py),
# so its statements are built once per filter too: each page only binds its values.
@lru_cache(maxsize=FILTER_CACHE_SIZE)
def _rows_by_name(model: type[MachineGroup | Machine], visible: Visible) -> ByName:
    return by_name(select(model), model, visible)


async def page_by_name(
    session: AsyncSession,
    model: type[Named],
    visible: Visible,
    first: int | None,
    after: str | None,
    plan: Plan | None = None,
) -> Page[Seen[Named]]:
    """A page of the `model` rows the viewer sees, ordered by (name, id). `plan` forces
    a plan (tests compare them); by default the count picks it."""
    statements = _rows_by_name(model, visible)
    page = await _by_name(session.execute, statements, first, after, {}, plan)
    return page.with_items(visible.seen([row[0] for row in page.items]))


async def plain_page_by_name(
    session: AsyncSession,
    statements: ByName,
    first: int | None,
    after: str | None,
    parameters: dict[str, object],
    plan: Plan | None = None,
) -> Page[Row[Any]]:
    """A page of `statements` as plain rows, for a list that only shows them: the ORM
    builds no objects (on a page of 50, more work than the statement itself)."""
    connection = await session.connection()
    return await _by_name(connection.execute, statements, first, after, parameters, plan)


async def _by_name(
    execute: Callable[..., Awaitable[Result[Any]]],
    statements: ByName,
    first: int | None,
    after: str | None,
    parameters: dict[str, object],
    plan: Plan | None,
) -> Page[Row[Any]]:
    size = check_page_size(first)
    bound = {**parameters, "size": size + 1}
    following = after is not None
    if after is not None:
        bound["after_name"], bound["after_id"] = decode_cursor(after, 2)
    if statements.plans is None:
        statement = statements.next_page if following else statements.first_page
        rows = (await execute(statement, bound)).all()
        counted = rows[0].total_count if rows else (await execute(statements.total)).scalar_one()
    else:
        # The count first, from the viewer's side: it is the list's total and picks the plan.
        counted = (await execute(statements.total)).scalar_one()
        first_page, next_page = statements.plans[plan or plan_for(int(counted))]
        rows = (await execute(next_page if following else first_page, bound)).all()
    items = rows[:size]
    cursors = [encode_cursor(row.sort_name, row.sort_id) for row in items]
    total = Total.of(int(counted))
    return Page(items, cursors, len(rows) > size, total.count, total.exact)


def decode_moment_cursor(after: str) -> tuple[datetime, str]:
    """The moment and id of a newest-first cursor (VALIDATION when it is not one)."""
    raw, row_id = decode_cursor(after, 2)
    try:
        return datetime.fromisoformat(raw), row_id
    except ValueError:
        raise validation("the cursor is not valid", "after") from None


def _one_per_row(model: type[Any]) -> Select[Any]:
    return select(literal(1)).select_from(model)


async def page_newest_first(
    session: AsyncSession,
    model: type[Timed],
    moment_field: str,
    arms: Sequence[ColumnElement[bool]],
    first: int | None,
    after: str | None,
    parse_id: Callable[[str], object] = str,
) -> Page[Timed]:
    """A page of the `model` rows matching any of `arms`, newest `moment_field` first (ties:
    by id), and their bounded count, in one statement.

    The arms are disjoint filters, each walked newest first along an index that orders
    its rows (an arm per status of `runs(status: [...])`, say): the page merges the first
    rows of each, and each arm stops once it has the page, however long the history.
    An OR of the arms would be read whole and sorted.
    """
    size = check_page_size(first)
    moment, row_id = col(getattr(model, moment_field)), col(model.id)
    after_cursor: list[ColumnElement[bool]] = []
    if after is not None:
        since, after_id = decode_moment_cursor(after)
        after_cursor.append(tuple_(moment, row_id) < tuple_(since, parse_id(after_id)))
    newest_first = (moment.desc(), row_id.desc())
    # Each arm counts along the page's own walk: the rows it reads first are the page's.
    counted = [_one_per_row(model).where(arm).order_by(*newest_first) for arm in arms]
    total = bounded_union(counted).correlate(None)
    query: Select[Any]
    if len(arms) == 1:
        query = select(model).where(arms[0], *after_cursor).order_by(*newest_first)
    else:
        # Each arm's first rows, whole (a join back to the table by id would let a
        # planner hash the whole table), merged and cut to the page.
        heads = [
            select(model).where(arm, *after_cursor).order_by(*newest_first).limit(size + 1)
            for arm in arms
        ]
        merged = union_all(*(select(head.subquery()) for head in heads)).subquery()
        query = select(aliased(model, merged)).order_by(
            getattr(merged.c, moment_field).desc(), merged.c.id.desc()
        )
    query = query.limit(size + 1).add_columns(total.label("total"))
    result = (await session.execute(query)).all()
    rows: list[Timed] = [found for found, _total in result]
    found = result[0][1] if result else await session.scalar(select(total))
    items = rows[:size]
    cursors = [encode_cursor(getattr(row, moment_field).isoformat(), str(row.id)) for row in items]
    shown = Total.of(int(found or 0))
    return Page(items, cursors, len(rows) > size, shown.count, shown.exact)
