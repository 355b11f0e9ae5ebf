"""What a list of groups shows: each group as plain columns, and beside it the facts read
in one statement for the whole page."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from functools import lru_cache
from operator import itemgetter
from typing import Any

from sqlalchemy import Row, ScalarSelect, and_, bindparam, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from app.db.models import Grant, Machine, MachineGroup, Run, User
from app.domain.access import Seen
from app.domain.enums import AccessLevel, RecordKind, RunStatus
from app.domain.pages import ByName, Page, Plan, by_name, plain_page_by_name
from app.domain.visibility import FILTER_CACHE_SIZE, Visible


@dataclass(slots=True)
class GroupRow:
    """A group of a page as plain columns: building 50 ORM rows cost more than reading them."""

    id: str
    environment_id: str
    name: str
    name_key: str
    description: str | None
    owner_id: str
    password_hash: str | None
    maintenance: bool
    created_at: datetime


# What the API's group type reads of a group: a whole row or a page's plain columns.
GroupRecord = MachineGroup | GroupRow


@dataclass(slots=True)
class Owner:
    """What a page shows of a group's owner: read as plain columns, not as a User row."""

    id: str
    name: str
    deactivated: bool
    premium: bool


@dataclass(slots=True)
class GroupFacts:
    """One group's owner, the viewer's grant on it, and its machine and run counts."""

    owner: Owner
    granted: AccessLevel | None
    machine_count: int
    running_count: int
    queued_count: int


# The columns of a listing's rows that make each part, by name. A Row's attributes are
# looked up by name on every access, and a frozen dataclass sets each field through
# object.__setattr__: together a tenth of the page's CPU on 50 rows. The positions are
# found once per page, and these plain records are built once and only read.
_GROUP_COLUMNS = tuple(field.name for field in fields(GroupRow))
_OWNER_COLUMNS = ("owner_id", "owner_name", "owner_deactivated", "owner_premium")
_FACT_COLUMNS = ("granted", "machine_count", "running_count", "queued_count")


def _picker(row: Row[Any], names: Sequence[str]) -> itemgetter[Any]:
    """The values of the columns `names` (two or more) of rows shaped like `row`."""
    return itemgetter(*(row._fields.index(name) for name in names))


@dataclass(frozen=True, slots=True)
class GroupListing:
    """A page of groups, and the facts of each by id when they were asked for."""

    page: Page[Seen[GroupRow]]
    facts: dict[str, GroupFacts]


async def list_groups(
    session: AsyncSession,
    viewer_id: str,
    visible: Visible,
    first: int | None,
    after: str | None,
    *,
    with_facts: bool,
    plan: Plan | None = None,
) -> GroupListing:
    """A page of the `visible` groups, by name, with their facts for `viewer_id` when
    `with_facts`: the page and its facts in one statement (each statement through the
    async driver costs far more than the database's own work), after the count that
    picks its plan (app/domain/pages.py)."""
    statements = _listing(visible, with_facts)
    parameters: dict[str, object] = {"viewer_id": viewer_id}
    page = await plain_page_by_name(session, statements, first, after, parameters, plan)
    rows = page.items
    groups: list[GroupRow] = []
    if rows:
        group_of = _picker(rows[0], _GROUP_COLUMNS)
        groups = [GroupRow(*group_of(row)) for row in rows]
    facts = _facts_of(groups, rows) if with_facts and rows else {}
    return GroupListing(page.with_items(visible.seen(groups)), facts)


def _facts_of(groups: Sequence[GroupRow], rows: Sequence[Row[Any]]) -> dict[str, GroupFacts]:
    owner_of, facts_of = _picker(rows[0], _OWNER_COLUMNS), _picker(rows[0], _FACT_COLUMNS)
    facts = {}
    for group, row in zip(groups, rows, strict=True):
        granted, *counts = facts_of(row)
        level = AccessLevel(granted) if granted else None
        facts[group.id] = GroupFacts(Owner(*owner_of(row)), level, *counts)
    return facts


def _runs_in(status: RunStatus) -> ScalarSelect[int]:
    return (
        select(func.count())
        .where(col(Run.group_id) == col(MachineGroup.id), col(Run.status) == status.value)
        .scalar_subquery()
    )


# Built once per visibility filter (they are cached per viewer, app/domain/visibility.py).
@lru_cache(maxsize=FILTER_CACHE_SIZE)
def _listing(visible: Visible, with_facts: bool) -> ByName:
    if not with_facts:
        return by_name(select(MachineGroup), MachineGroup, visible)
    machines = (
        select(func.count()).where(col(Machine.group_id) == col(MachineGroup.id)).scalar_subquery()
    )
    grant = and_(
        col(Grant.record_kind) == RecordKind.MACHINE_GROUP.value,
        col(Grant.record_id) == col(MachineGroup.id),
        col(Grant.user_id) == bindparam("viewer_id"),
    )
    selected = (
        select(
            MachineGroup,
            col(User.name).label("owner_name"),
            col(User.deactivated).label("owner_deactivated"),
            col(User.premium).label("owner_premium"),
            col(Grant.level).label("granted"),
            machines.label("machine_count"),
            _runs_in(RunStatus.RUNNING).label("running_count"),
            _runs_in(RunStatus.QUEUED).label("queued_count"),
        )
        .join(User, col(User.id) == col(MachineGroup.owner_id))
        .outerjoin(Grant, grant)
    )
    return by_name(selected, MachineGroup, visible)
