"""The one permission path: whether a principal may see a record, and act on it.

Seeing is decided here for every record the API hands out, in batches (`Sight`), and
its SQL mirror (`app/domain/visibility.py`) filters lists by the same rules; a test
checks that the two agree. Acting is decided by `authorize`, from the two tables of the
spec (security roles, access levels) compiled by `app/authz`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from sqlalchemy import BindParameter, bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from app.authz.decisions import Verdict, decide, role_permits
from app.db.models import Environment, Grant, Machine, MachineGroup
from app.domain.caller import Caller, Viewer
from app.domain.enums import AccessLevel, Action, ErrorCode, RecordKind
from app.domain.errors import DomainError, not_found, permission_denied
from app.domain.validation import region_allows_machines

Record = Machine | MachineGroup
T = TypeVar("T", covariant=True)


@dataclass(frozen=True, slots=True)
class Seen(Generic[T]):
    """A record this module (or its SQL mirror) found the viewer may see.

    The API's record types are built from `Seen` values only, so a field that leads to
    a record cannot hand it out before its visibility has been decided.
    """

    record: T


class Owned(Protocol):
    """What deciding on a group or machine reads of it (a row or a page's plain row)."""

    @property
    def id(self) -> str: ...
    @property
    def environment_id(self) -> str: ...
    @property
    def owner_id(self) -> str: ...


def level_of(
    viewer_id: str, owner_id: str, granted: AccessLevel | str | None
) -> AccessLevel | None:
    """A viewer's level on a record from its owner and the viewer's grant on it, if any."""
    if owner_id == viewer_id:
        return AccessLevel.OWNER
    return AccessLevel(granted) if granted else None


def sees(viewer: Viewer, environment_id: str, level: AccessLevel | None) -> bool:
    """Seeing needs any level on the record, or administering its environment; security
    roles do not restrict seeing."""
    return level is not None or viewer.administers(environment_id)


def sees_owned(viewer: Viewer, record: Owned, granted: AccessLevel | None) -> bool:
    """Whether the viewer sees a group, or a machine in no group, given their grant on it."""
    return sees(viewer, record.environment_id, level_of(viewer.id, record.owner_id, granted))


def decided_without_grant(viewer: Viewer, record: Owned) -> bool:
    """Whether owning or administering decides seeing the record, so no grant is read."""
    return record.owner_id == viewer.id or viewer.administers(record.environment_id)


def sees_targeted(
    viewer_id: str, maker_id: str, group_id: str | None, sees_group: bool, sees_machine: bool
) -> bool:
    """Runs and connections: seen by whoever made them (a run's starter, a connection's
    owner) and by those who see their target (a group, else a machine)."""
    if maker_id == viewer_id:
        return True
    return sees_group if group_id else sees_machine


def governed(group: Seen[Owned], rows: Sequence[Any]) -> list[Seen[Any]]:
    """Records a seen group governs (its machines, its queued runs): seen with it."""
    for row in rows:
        if row.group_id != group.record.id:
            raise ValueError(f"{row!r} is not in group {group.record.id}")
    return [Seen(row) for row in rows]


def kind_of(record: Record) -> RecordKind:
    """`machine` or `machine_group`."""
    return RecordKind.MACHINE if isinstance(record, Machine) else RecordKind.MACHINE_GROUP


def _access_statement() -> Any:
    """The owner of a machine's group, the viewer's grant on the governing record, and the
    region of the record's environment: what a permission check reads, in one statement.

    Built once with bound parameters, so SQLAlchemy compiles it once.
    """
    governing_id: BindParameter[str] = bindparam("governing_id")
    return select(
        select(col(MachineGroup.owner_id))
        .where(col(MachineGroup.id) == governing_id)
        .scalar_subquery()
        .label("group_owner"),
        select(col(Grant.level))
        .where(
            col(Grant.record_kind) == bindparam("kind"),
            col(Grant.record_id) == governing_id,
            col(Grant.user_id) == bindparam("user_id"),
        )
        .scalar_subquery()
        .label("granted"),
        select(col(Environment.region))
        .where(col(Environment.id) == bindparam("environment_id"))
        .scalar_subquery()
        .label("region"),
    )


_ACCESS = _access_statement()


@dataclass(frozen=True)
class Access:
    """The viewer's level on a record, and the region of the record's environment."""

    level: AccessLevel | None
    region: str | None


async def access_to(session: AsyncSession, viewer: Viewer, record: Record) -> Access:
    """The viewer's access to a record: on a machine in a group, the group's grants and
    owner decide (the foreign key keeps a machine's group in existence)."""
    group_id = record.group_id if isinstance(record, Machine) else None
    in_group = group_id is not None
    facts = (
        await session.execute(
            _ACCESS,
            {
                "governing_id": group_id or record.id,
                "kind": (RecordKind.MACHINE_GROUP if in_group else kind_of(record)).value,
                "user_id": viewer.id,
                "environment_id": record.environment_id,
            },
        )
    ).one()
    owner_id = facts.group_owner if in_group else record.owner_id
    return Access(level_of(viewer.id, owner_id, facts.granted), facts.region)


# What each action is, in a sentence about a record ("you may not ... this machine group").
ACTION_PHRASES = {
    Action.VIEW: "see",
    Action.REGISTER: "register",
    Action.CREATE: "create",
    Action.RUN: "run desktop flows on",
    Action.SHARE: "share or change the grants of",
    Action.ADD_MACHINE: "add machines to",
    Action.REMOVE_MACHINE: "remove machines from",
    Action.EDIT: "edit",
    Action.DELETE: "delete",
}


def _check_region(region: str | None) -> None:
    """Refuse machine features in restricted regions; None: the environment is missing."""
    if region is None:
        raise not_found("environment", "environmentId")
    if not region_allows_machines(region):
        raise DomainError(
            ErrorCode.UNAVAILABLE_IN_REGION,
            f"machines and machine groups are not available in region {region!r}",
        )


async def require_region(session: AsyncSession, environment_id: str) -> Environment:
    """The environment, refusing machine features in restricted regions."""
    environment = await session.get(Environment, environment_id)
    _check_region(environment.region if environment is not None else None)
    assert environment is not None  # refused above
    return environment


async def authorize(
    session: AsyncSession,
    caller: Caller,
    record: Record,
    action: Action,
    *,
    what: str,
    field: str | None = None,
    machine_level_change: bool = False,
) -> AccessLevel | None:
    """Check one action on one record, raising the first error the spec's order names.

    Returns the caller's level on the record (None: an administrator without a grant).
    `machine_level_change` marks machine-level sharing, refused while the machine is in
    a group (its access is the group's).
    """
    access = await access_to(session, caller.viewer, record)
    level = access.level
    roles = caller.viewer.roles_in(record.environment_id)
    verdict = decide(caller.services.policy.table, roles, level, kind_of(record), action)
    if verdict is Verdict.NOT_FOUND:
        raise not_found(what, field)
    if action is not Action.VIEW:
        _check_region(access.region)
    if machine_level_change and isinstance(record, Machine) and record.group_id:
        raise DomainError(
            ErrorCode.MANAGED_BY_GROUP,
            "this machine is in a group: manage access on the group instead",
        )
    if verdict is Verdict.DENIED:
        raise permission_denied(
            f"you may not {ACTION_PHRASES[action]} this {what}: your access level on it and"
            " your security roles must both allow it"
        )
    return level


def require_privilege(
    caller: Caller, environment_id: str, kind: RecordKind, action: Action, what: str
) -> None:
    """Check a privilege that concerns no existing record (register, create)."""
    roles = caller.viewer.roles_in(environment_id)
    if not role_permits(caller.services.policy.table, roles, kind, action):
        raise permission_denied(f"your security roles do not allow you to {what}")


def may_share(
    caller: Caller, environment_id: str, level: AccessLevel | None, kind: RecordKind
) -> bool:
    """Whether the caller may share a record they hold `level` on (by both tables)."""
    roles = caller.viewer.roles_in(environment_id)
    return decide(caller.services.policy.table, roles, level, kind, Action.SHARE) is Verdict.ALLOWED


def sharing_level(caller: Caller, environment_id: str, level: AccessLevel | None) -> AccessLevel:
    """The level a sharer acts with: an administrator acts as the owner."""
    if level is None or caller.viewer.administers(environment_id):
        return AccessLevel.OWNER
    return level


def check_grant_change(own: AccessLevel, level: AccessLevel, existing: AccessLevel | None) -> None:
    """Nobody grants more than they hold, and a sharer changes only grants at or below
    their own level; a USER-level sharer only adds USER grants."""
    if level.rank > own.rank:
        raise permission_denied(f"you hold {own.value} and cannot grant {level.value}")
    if existing is not None and own is AccessLevel.USER:
        raise permission_denied("a USER-level sharer cannot change existing grants")
    if existing is not None and existing.rank > own.rank:
        raise permission_denied("you cannot change a grant above your own level")


def check_revoke(own: AccessLevel, existing: AccessLevel | None) -> None:
    """A USER-level sharer revokes nothing; others revoke grants (that exist) at or below
    their own level."""
    if own is AccessLevel.USER:
        raise permission_denied("a USER-level sharer cannot revoke grants")
    if existing is None:
        raise not_found("grant", "userId")
    if existing.rank > own.rank:
        raise permission_denied("you cannot revoke a grant above your own level")


def visible_grants(
    caller: Caller, environment_id: str, level: AccessLevel | None, grants: list[Any]
) -> list[Any]:
    """A group's access list (owner first): whole to those who may share the group, else
    only the viewer's own entry. Entries are (user, level) pairs."""
    if may_share(caller, environment_id, level, RecordKind.MACHINE_GROUP):
        return grants
    return [(user, access) for user, access in grants if user.id == caller.viewer.id]


async def co_owns_target(
    session: AsyncSession, caller: Caller, group_id: str | None, machine_id: str | None
) -> bool:
    """Whether the caller administers, or holds co-owner level or more on, a run's or a
    connection's target (a group, else a machine; False when there is none)."""
    target: Record | None = None
    if group_id:
        target = await session.get(MachineGroup, group_id)
    elif machine_id:
        target = await session.get(Machine, machine_id)
    if target is None:
        return False
    if caller.viewer.administers(target.environment_id):
        return True
    level = (await access_to(session, caller.viewer, target)).level
    return level is not None and level.rank >= AccessLevel.CO_OWNER.rank
