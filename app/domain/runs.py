"""Runs: listing and looking up the runs a caller may see.

How a run changes (start, claim, complete, cancel, priority, expiry) is in
app/domain/run_life/.
"""

from __future__ import annotations

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from app.db.models import Run
from app.domain.access import Seen
from app.domain.caller import Caller
from app.domain.enums import RunStatus
from app.domain.errors import not_found
from app.domain.pages import Page, page_newest_first
from app.domain.visibility import visible_runs

RUN = "run"


async def visible_run(session: AsyncSession, caller: Caller, run_id: str) -> Run:
    """A run the caller may see, or NOT_FOUND."""
    run = await session.scalar(
        select(Run).where(col(Run.id) == run_id, visible_runs(caller.viewer).where)
    )
    if run is None:
        raise not_found(RUN, "id")
    return run


async def run_history(
    session: AsyncSession,
    caller: Caller,
    *,
    group_id: str | None,
    machine_id: str | None,
    statuses: list[RunStatus] | None,
    first: int | None,
    after: str | None,
) -> Page[Seen[Run]]:
    """Runs the caller may see, newest first, filtered by queue and status."""
    visible = visible_runs(caller.viewer)
    where = visible.where
    if group_id is not None:
        where = where & (col(Run.group_id) == group_id)
    if machine_id is not None:
        where = where & or_(
            col(Run.machine_id) == machine_id, col(Run.target_machine_id) == machine_id
        )
    if statuses:
        where = where & col(Run.status).in_([status.value for status in statuses])
    page = await page_newest_first(session, Run, "enqueued_at", where, first, after)
    return Page(visible.seen(page.items), page.cursors, page.has_next_page, page.total_count)
