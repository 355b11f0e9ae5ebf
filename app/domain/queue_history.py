"""Run history read from the queues a viewer sees: the plan for a viewer who sees little.

The walk (`page_newest_first`) reads all runs newest first and decides each by probes:
it fills a page after reading about the page's size divided by the share of runs the
viewer sees, which for a viewer of one group among 100,000 is most of the table. This
plan starts from the viewer's side instead (`visibility.Queues`): the groups and
machines they see, at most OWN_LIMIT of them, and the runs they started. Each queue's
newest runs are read from an index in page order, `(group_id, enqueued_at, id)` and
`(target_machine_id, enqueued_at, id)` (per status: `(group_id, status, ...)`,
`(target_machine_id, status, ...)`), and the viewer's own runs from `(started_by_id,
enqueued_at, id)`; the parts are merged and cut to the page.

Each queue gives at most the page's size (plus ties at its cut): the rows at or after the
moment of its page-size-th newest run, found by an index-only step of that many entries
(`LIMIT 1 OFFSET size`; SQLite has no LATERAL, and the cut-off is a search bound on the
queue's index in both databases). A run may be both in a queue and started by the viewer:
the parts are merged as a set. So a page reads at most (queues + 1) x (size + 1) index
entries, whatever the size of the tables, and its rows by key.

The count reads from the same side, at most COUNT_LIMIT + 1 rows: the runs of each queue,
then the viewer's runs in queues they do not see (probes, as the walk decides them; those
in queues they see were counted already, and are at most as many as were counted).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, cast

from sqlalchemy import (
    CTE,
    ColumnElement,
    DateTime,
    Select,
    and_,
    bindparam,
    func,
    literal,
    or_,
    select,
    tuple_,
    union,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased
from sqlmodel import col

from app.db.hints import drive_from, unindexed
from app.db.models import Run
from app.domain.counts import Total, bounded_union
from app.domain.enums import RunStatus
from app.domain.pages import Page, check_page_size, decode_moment_cursor, encode_cursor
from app.domain.visibility import FILTER_CACHE_SIZE, Queues

# Older than any run: a queue with fewer runs than a page is read whole.
_DAWN = datetime(1, 1, 1, tzinfo=UTC)
Condition = Callable[[Any], list[ColumnElement[bool]]]


def _moment(name: str) -> Any:
    return bindparam(name, type_=DateTime(timezone=True))


def _after(run: Any) -> ColumnElement[bool]:
    return tuple_(run.enqueued_at, run.id) < tuple_(_moment("after_at"), bindparam("after_id"))


def _newest_first(run: Any) -> tuple[Any, Any]:
    return col(run.enqueued_at).desc(), col(run.id).desc()


def _queue_heads(queues: CTE, in_queue: Condition, following: bool) -> Select[Any]:
    """The newest `fetch` runs (and ties) of each queue of `queues`: the rows of a queue
    at or after the moment of its `fetch`-th newest run (before the cursor)."""

    def where(run: Any) -> list[ColumnElement[bool]]:
        return [*in_queue(run), *([_after(run)] if following else [])]

    head, older = aliased(Run, name="head"), aliased(Run, name="cut")
    cut = (
        select(col(older.enqueued_at))
        .where(*where(older))
        .order_by(*_newest_first(older))
        .limit(1)
        .offset(bindparam("skip"))
        .scalar_subquery()
    )
    since = func.coalesce(cut, _moment("dawn"))
    joined = and_(*where(head), col(head.enqueued_at) >= since)
    each = drive_from(queues, head, joined)
    heads = select(col(head.id), col(head.enqueued_at)).select_from(each)
    return cast(Select[Any], heads)


def _in_status(status: str | None, indexed: bool = True) -> Condition:
    """In `status` (None: any). Not `indexed`: checked on the rows the other terms find
    (the status's own index, in page order, would tempt SQLite to walk all its runs)."""
    column = col if indexed else unindexed
    return lambda run: [] if status is None else [column(run.status) == status]


def _in_group(queues: Queues, status: Condition) -> Condition:
    return lambda run: [col(run.group_id) == queues.groups.c.id, *status(run)]


def _aimed_at_machine(queues: Queues, status: Condition) -> Condition:
    """A run aimed at one of the machines and naming no group (else the group decides
    who sees it; no run names both). `group_id IS NULL` is checked on the rows the
    machine's id finds: SQLite could otherwise walk every run that names no group."""
    return lambda run: [
        col(run.target_machine_id) == queues.machines.c.id,
        unindexed(col(run.group_id)).is_(None),
        *status(run),
    ]


def _page(queues: Queues, statuses: tuple[str, ...], following: bool) -> Select[Any]:
    """The page's runs, newest first, with the list's bounded count beside each."""
    parts = []
    for chosen in statuses or (None,):
        status = _in_status(chosen)
        parts.append(_queue_heads(queues.groups, _in_group(queues, status), following))
        parts.append(_queue_heads(queues.machines, _aimed_at_machine(queues, status), following))
        mine = aliased(Run, name="mine")
        started = (
            select(col(mine.id), col(mine.enqueued_at))
            .where(
                col(mine.started_by_id) == queues.viewer_id,
                *_in_status(chosen, indexed=False)(mine),
                *([_after(mine)] if following else []),
            )
            .order_by(*_newest_first(mine))
            .limit(bindparam("fetch"))
        )
        parts.append(select(started.subquery()))
    # A set: a run the viewer started in a queue they see comes from both parts.
    keys = union(*parts).subquery("keys")
    page = (
        select(keys.c.id, keys.c.enqueued_at)
        .order_by(keys.c.enqueued_at.desc(), keys.c.id.desc())
        .limit(bindparam("fetch"))
        .subquery("page")
    )
    return (
        select(Run)
        .join(page, page.c.id == col(Run.id))
        .order_by(page.c.enqueued_at.desc(), page.c.id.desc())
        .add_columns(_total(queues, statuses).label("total"))
    )


def _total(queues: Queues, statuses: tuple[str, ...]) -> Any:
    """The runs the viewer sees, counted from their queues, up to COUNT_LIMIT + 1."""
    parts: list[Select[Any]] = []
    for chosen in statuses or (None,):
        status = _in_status(chosen)
        for source, in_queue in (
            (queues.groups, _in_group(queues, status)),
            (queues.machines, _aimed_at_machine(queues, status)),
        ):
            run = aliased(Run, name="counted")
            each = drive_from(source, run, and_(*in_queue(run)))
            parts.append(select(literal(1)).select_from(each))
    mine = aliased(Run, name="mine_elsewhere")
    chosen_statuses = [unindexed(col(mine.status)) == status for status in statuses]
    parts.append(
        select(literal(1))
        .select_from(mine)
        .where(
            col(mine.started_by_id) == queues.viewer_id,
            or_(*chosen_statuses) if chosen_statuses else literal(True),
            ~queues.sees_queue_of(mine),
        )
    )
    return bounded_union(parts).correlate(None)


@lru_cache(maxsize=FILTER_CACHE_SIZE)
def _statements(queues: Queues, statuses: tuple[str, ...]) -> tuple[Select[Any], Select[Any]]:
    """The first page and a page after a cursor (statements built once per viewer and
    filter; each page binds its values)."""
    return _page(queues, statuses, False), _page(queues, statuses, True)


async def page_from_queues(
    session: AsyncSession,
    queues: Queues,
    statuses: Sequence[RunStatus] | None,
    first: int | None,
    after: str | None,
) -> Page[Run]:
    """A page of the runs the viewer sees (in `statuses`, if given), newest first, read
    from their queues, and their bounded count: the same page as the walk's."""
    size = check_page_size(first)
    chosen = tuple(sorted({status.value for status in statuses or ()}))
    first_page, next_page = _statements(queues, chosen)
    bound: dict[str, object] = {"fetch": size + 1, "skip": size, "dawn": _DAWN}
    statement = first_page
    if after is not None:
        bound["after_at"], bound["after_id"] = decode_moment_cursor(after)
        statement = next_page
    result = (await session.execute(statement, bound)).all()
    rows: list[Run] = [found for found, _total in result]
    counted = result[0][1] if result else await _count(session, queues, chosen)
    items = rows[:size]
    cursors = [encode_cursor(row.enqueued_at.isoformat(), str(row.id)) for row in items]
    shown = Total.of(int(counted or 0))
    return Page(items, cursors, len(rows) > size, shown.count, shown.exact)


async def _count(session: AsyncSession, queues: Queues, statuses: tuple[str, ...]) -> int:
    return int(await session.scalar(select(_total(queues, statuses))) or 0)
