"""Connections: how runs are started, "directly to machine" or to a group."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from sqlalchemy import Select, bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from app.db.models import Connection, MachineGroup
from app.domain import secret_box
from app.domain.access import Record, Seen, authorize, co_owns_target
from app.domain.caller import Caller
from app.domain.enums import Action, ConnectionStatus
from app.domain.errors import conflict, not_found, permission_denied, validation
from app.domain.groups import GROUP, find_group
from app.domain.machines import MACHINE, find_machine
from app.domain.validation import clean_name, name_key
from app.domain.visibility import FILTER_CACHE_SIZE, Visible, visible_connections

MAX_USERNAME = 256
MAX_PASSWORD = 1024
CONNECTION = "connection"


def _check_credentials(username: str | None, password: str | None) -> None:
    # A username follows the rules of names (NUL, a control character, is refused with
    # them); it is stored trimmed by the callers, as `clean_name` trims.
    if username is not None:
        clean_name(username, "username", MAX_USERNAME)
    if password is not None and not (0 < len(password) <= MAX_PASSWORD):
        raise validation(f"password must be 1-{MAX_PASSWORD} characters", "password")


async def _target(
    session: AsyncSession, caller: Caller, machine_id: str | None, group_id: str | None
) -> Record:
    """The one target named, checked for run access; a machine must not be in a group."""
    if machine_id is None and group_id is None:
        raise validation("a connection needs a target: give machineId or groupId", "groupId")
    if machine_id is not None and group_id is not None:
        raise validation(
            "a connection has one target: give machineId or groupId, not both", "machineId"
        )
    if group_id is not None:
        group = await find_group(session, group_id)
        await authorize(session, caller, group, Action.RUN, what=GROUP, field="groupId")
        return group
    assert machine_id is not None
    machine = await find_machine(session, machine_id)
    await authorize(
        session,
        caller,
        machine,
        Action.RUN,
        what=MACHINE,
        field="machineId",
        machine_level_change=True,
    )
    return machine


def _aim(connection: Connection, target: Record) -> None:
    is_group = isinstance(target, MachineGroup)
    connection.group_id = target.id if is_group else None
    connection.machine_id = None if is_group else target.id
    connection.status = ConnectionStatus.ACTIVE.value
    connection.broken_reason = None


async def create_connection(
    session: AsyncSession,
    caller: Caller,
    *,
    name: str,
    machine_id: str | None,
    group_id: str | None,
    username: str,
    password: str,
) -> Connection:
    """A connection owned by the caller; the password is stored encrypted."""
    target = await _target(session, caller, machine_id, group_id)
    clean = clean_name(name)
    _check_credentials(username, password)
    existing = await session.scalar(
        select(col(Connection.name)).where(
            col(Connection.owner_id) == caller.viewer.id,
            col(Connection.name_key) == name_key(clean),
        )
    )
    if existing is not None:
        raise conflict(
            f"you have a connection named {existing!r} already (names are compared ignoring case)",
            "name",
        )
    connection = Connection(
        name=clean,
        name_key=name_key(clean),
        owner_id=caller.viewer.id,
        username=username.strip(),
        password_encrypted=secret_box.encrypt(caller.settings.secret_keys, password),
        created_at=caller.clock.now(),
    )
    _aim(connection, target)
    session.add(connection)
    await session.flush()
    return connection


# Built once per visibility filter (cached per viewer): starting a run looks its
# connection up.
@lru_cache(maxsize=FILTER_CACHE_SIZE)
def _visible_by_id(visible: Visible) -> Select[Any]:
    return select(Connection).where(col(Connection.id) == bindparam("id"), visible.where)


async def find_connection(
    session: AsyncSession, caller: Caller, connection_id: str, field: str = "id"
) -> Connection:
    """A connection the caller may see, or NOT_FOUND (naming `field`, the argument that
    gave its id)."""
    statement = _visible_by_id(visible_connections(caller.viewer))
    connection: Connection | None = await session.scalar(statement, {"id": connection_id})
    if connection is None:
        raise not_found(CONNECTION, field)
    return connection


async def list_connections(session: AsyncSession, caller: Caller) -> list[Seen[Connection]]:
    """Every connection the caller may see, by name."""
    visible = visible_connections(caller.viewer)
    result = await session.scalars(
        select(Connection).where(visible.where).order_by(col(Connection.name), col(Connection.id))
    )
    return visible.seen(list(result))


async def _may_update(session: AsyncSession, caller: Caller, connection: Connection) -> bool:
    if connection.owner_id == caller.viewer.id:
        return True
    return await co_owns_target(session, caller, connection.group_id, connection.machine_id)


async def update_connection(
    session: AsyncSession,
    caller: Caller,
    connection_id: str,
    *,
    machine_id: str | None,
    group_id: str | None,
    username: str | None,
    password: str | None,
) -> Connection:
    """Change credentials or retarget (which makes a broken connection active again)."""
    connection = await find_connection(session, caller, connection_id)
    if not await _may_update(session, caller, connection):
        raise permission_denied(
            "only the connection's owner or a co-owner of its target may change it"
        )
    target = None
    if machine_id is not None or group_id is not None:
        target = await _target(session, caller, machine_id, group_id)
    _check_credentials(username, password)
    if target is not None:
        _aim(connection, target)
    if username is not None:
        connection.username = username.strip()
    if password is not None:
        connection.password_encrypted = secret_box.encrypt(caller.settings.secret_keys, password)
    return connection
