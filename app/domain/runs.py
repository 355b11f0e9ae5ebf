"""Runs: listing and looking up the runs a caller may see.

How a run changes (start, claim, complete, cancel, priority, expiry) is in
app/domain/run_life/.
"""

from __future__ import annotations

from sqlalchemy import ColumnElement, or_, select, true
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from app.db.models import Run
from app.domain.access import Seen
from app.domain.caller import Caller, Viewer
from app.domain.enums import RunStatus
from app.domain.errors import not_found
from app.domain.pages import Page, Plan, page_newest_first, plan_for
from app.domain.queue_history import page_from_queues
from app.domain.visibility import visible_queues, visible_runs

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
    return await history(
        session,
        caller.viewer,
        group_id=group_id,
        machine_id=machine_id,
        statuses=statuses,
        first=first,
        after=after,
    )


async def history(
    session: AsyncSession,
    viewer: Viewer,
    *,
    group_id: str | None,
    machine_id: str | None,
    statuses: list[RunStatus] | None,
    first: int | None,
    after: str | None,
    plan: Plan | None = None,
) -> Page[Seen[Run]]:
    """`run_history` for a viewer; `plan` forces how it is read (tests compare them).

    A history of one queue walks that queue's index. Otherwise the viewer's groups and
    machines are counted first, up to OWN_LIMIT + 1: a viewer who sees at most OWN_LIMIT
    of them is served from their queues (app/domain/queue_history.py), others by the
    walk of all runs newest first (app/domain/pages.py).
    """
    visible = visible_runs(viewer)
    if group_id is None and machine_id is None:
        queues = visible_queues(viewer)
        if plan is None:
            plan = plan_for(int(await session.scalar(queues.records) or 0))
        if plan is Plan.OWN:
            page = await page_from_queues(session, queues, statuses, first, after)
            return page.with_items(visible.seen(page.items))
    arms = [arm & visible.where for arm in _history_arms(group_id, machine_id, statuses)]
    walked = await page_newest_first(session, Run, "enqueued_at", arms, first, after)
    return walked.with_items(visible.seen(walked.items))


def _history_arms(
    group_id: str | None, machine_id: str | None, statuses: list[RunStatus] | None
) -> list[ColumnElement[bool]]:
    """The filter of a history as disjoint parts, each read newest first along an index
    that orders it (migration 0008): (enqueued_at, id) for all runs, (status, ...) per
    status, (group_id, ...) and (group_id, status, ...) for a group's, and for a
    machine's, (target_machine_id, status, ...) and (machine_id, status, ...) per status,
    for the runs aimed at it and the runs it ran that were aimed elsewhere."""
    queues: list[ColumnElement[bool]] = [true()]
    if group_id is not None:
        queues = [col(Run.group_id) == group_id]
        if machine_id is not None:
            ran = or_(col(Run.machine_id) == machine_id, col(Run.target_machine_id) == machine_id)
            queues = [queues[0] & ran]
    elif machine_id is not None:
        aimed = col(Run.target_machine_id) == machine_id
        queues = [
            aimed,
            (col(Run.machine_id) == machine_id) & or_(col(Run.target_machine_id).is_(None), ~aimed),
        ]
        # A machine's runs have no (machine, moment) index: one arm per status instead.
        statuses = statuses or list(RunStatus)
    if not statuses:
        return queues
    return [
        queue & (col(Run.status) == status.value)
        for queue in queues
        for status in dict.fromkeys(statuses)
    ]
