"""Cursor pagination over what a viewer may see, ordered by name."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any, Generic, TypeVar

from sqlalchemy import ColumnElement, Result, Row, Select, bindparam, func, or_, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from app.db.models import AuditEntry, Machine, MachineGroup, Run
from app.domain.access import Seen
from app.domain.errors import validation
from app.domain.visibility import FILTER_CACHE_SIZE, Visible

# MG_MAX_PAGE_SIZE (100 by default) is the cap the API enforces before executing
# (app/graphql/cost.py); the rules themselves refuse only what no setting may allow.
from app.settings import MAX_PAGE_SIZE

DEFAULT_PAGE_SIZE = 50
T = TypeVar("T")
Named = TypeVar("Named", MachineGroup, Machine)
Timed = TypeVar("Timed", Run, AuditEntry)


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of rows with what the API's connection types need."""

    items: Sequence[T]
    cursors: Sequence[str]
    has_next_page: bool
    total_count: int


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


@dataclass(frozen=True)
class ByName:
    """The statements of a list ordered by (name, id): its first page, a page after a
    cursor (each row with the list's total beside it), and the total alone. Bound
    parameters: `size`, `after_name`, `after_id`."""

    first_page: Select[Any]
    next_page: Select[Any]
    total: Select[Any]


def by_name(selected: Select[Any], model: type[MachineGroup | Machine], visible: Visible) -> ByName:
    """The statements of a list of `selected` (rows of `model`) that the viewer sees."""
    sort_name, row_id = col(model.name_key), col(model.id)
    where, total = visible.where, visible.total
    cursor = tuple_(bindparam("after_name"), bindparam("after_id"))

    def paged(condition: ColumnElement[bool]) -> Select[Any]:
        # The page's ids first, then its rows: whatever `selected` computes per row (counts
        # in subqueries) is computed for the page's rows only, not for every match before
        # the sort picks the page.
        page = (
            select(row_id.label("id"), sort_name.label("name_key"))
            .where(condition)
            .order_by(sort_name, row_id)
            .limit(bindparam("size"))
            .subquery("page")
        )
        return (
            selected.join(page, page.c.id == row_id)
            .order_by(page.c.name_key, page.c.id)
            # The sort key rides along under fixed names: the cursor of any kind of row.
            .add_columns(
                page.c.name_key.label("sort_name"),
                page.c.id.label("sort_id"),
                total.scalar_subquery().label("total_count"),
            )
        )

    after_cursor = where & (tuple_(sort_name, row_id) > cursor)
    return ByName(paged(where), paged(after_cursor), total)


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
) -> Page[Seen[Named]]:
    """A page of the `model` rows the viewer sees, ordered by (name, id)."""
    statements = _rows_by_name(model, visible)
    page = await _by_name(session.execute, statements, first, after, {})
    seen = visible.seen([row[0] for row in page.items])
    return Page(seen, page.cursors, page.has_next_page, page.total_count)


async def plain_page_by_name(
    session: AsyncSession,
    statements: ByName,
    first: int | None,
    after: str | None,
    parameters: dict[str, object],
) -> Page[Row[Any]]:
    """A page of `statements` as plain rows, for a list that only shows them: the ORM
    builds no objects (on a page of 50, more work than the statement itself)."""
    connection = await session.connection()
    return await _by_name(connection.execute, statements, first, after, parameters)


async def _by_name(
    execute: Callable[..., Awaitable[Result[Any]]],
    statements: ByName,
    first: int | None,
    after: str | None,
    parameters: dict[str, object],
) -> Page[Row[Any]]:
    size = check_page_size(first)
    bound = {**parameters, "size": size + 1}
    statement = statements.first_page
    if after is not None:
        bound["after_name"], bound["after_id"] = decode_cursor(after, 2)
        statement = statements.next_page
    rows = (await execute(statement, bound)).all()
    items = rows[:size]
    total = rows[0].total_count if rows else (await execute(statements.total)).scalar_one()
    cursors = [encode_cursor(row.sort_name, row.sort_id) for row in items]
    return Page(items, cursors, len(rows) > size, int(total))


async def page_newest_first(
    session: AsyncSession,
    model: type[Timed],
    moment_field: str,
    where: ColumnElement[bool],
    first: int | None,
    after: str | None,
    parse_id: Callable[[str], object] = str,
) -> Page[Timed]:
    """A page of `model` rows matching `where`, newest `moment_field` first (ties: by id)."""
    size = check_page_size(first)
    moment = col(getattr(model, moment_field))
    query = select(model).where(where)
    if after is not None:
        raw, row_id = decode_cursor(after, 2)
        try:
            since = datetime.fromisoformat(raw)
        except ValueError:
            raise validation("the cursor is not valid", "after") from None
        query = query.where(
            or_(moment < since, (moment == since) & (col(model.id) < parse_id(row_id)))
        )
    query = query.order_by(moment.desc(), col(model.id).desc()).limit(size + 1)
    rows, total = await _rows_and_total(session, model, query, where)
    items = rows[:size]
    cursors = [encode_cursor(getattr(row, moment_field).isoformat(), str(row.id)) for row in items]
    return Page(items, cursors, len(rows) > size, total or 0)


async def _rows_and_total(
    session: AsyncSession, model: type[T], query: Select[Any], where: ColumnElement[bool]
) -> tuple[list[T], int]:
    """A page's rows and how many rows match `where` in all, in one statement when the page
    has rows (the count rides along as an uncorrelated subquery the database runs once)."""
    count = select(func.count()).select_from(model).where(where).scalar_subquery()
    result = (await session.execute(query.add_columns(count))).all()
    if result:
        return [row for row, _total in result], int(result[0][1])
    return [], int(await session.scalar(select(count)) or 0)
