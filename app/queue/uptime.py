"""When the service became up: each server's life in the database.

Time during which no server was up does not count against a machine: after an outage a
machine gets the full MG_MACHINE_TIMEOUT from the service's start to reach it, however
long the outage was. With several servers on one database the service is up while any
of them is, so one server restarting while another runs is no outage.

Each server records its start, and its sweeper marks it alive at every pass. The lives,
each [started_at, alive_at], that overlap back from now say since when the service has
been up without a break. A server killed mid-life keeps the end of its last pass: the gap
until the next start is the outage. A server still up whose latest mark is a pass old can
look like a gap to a server that started since; that errs on the side of the machines
(no expiry that pass) and closes at its next pass.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from sqlalchemy import bindparam, delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from app.db.models import ServerLife
from app.domain.clock import as_utc

# Ended lives are kept this long, beyond any machine timeout, then forgotten at a start.
KEEP_ENDED_LIVES = timedelta(days=1)

_STILL_ALIVE = (
    update(ServerLife)
    .where(col(ServerLife.id) == bindparam("server"))
    .values(alive_at=bindparam("now"))
    .returning(col(ServerLife.id))
    .execution_options(synchronize_session=False)
)
_LIVES_SINCE = select(col(ServerLife.started_at), col(ServerLife.alive_at)).where(
    col(ServerLife.alive_at) >= bindparam("since")
)
_FORGET = delete(ServerLife).where(col(ServerLife.alive_at) < bindparam("before"))


async def record_alive(session: AsyncSession, server_id: str, now: datetime) -> None:
    """Mark this server alive at `now`; its first mark is its start."""
    # Plain SQL on the session's connection: the ORM's bulk-update path is most of the
    # cost of a statement sent every second to change one row.
    connection = await session.connection()
    marked = await connection.execute(_STILL_ALIVE, {"server": server_id, "now": now})
    if marked.first() is None:
        session.add(ServerLife(id=server_id, started_at=now, alive_at=now))


async def record_start(
    session: AsyncSession, server_id: str, now: datetime, machine_timeout: int
) -> None:
    """Record a server's start, and forget lives that ended long before any timeout."""
    keep = max(KEEP_ENDED_LIVES, timedelta(seconds=machine_timeout))
    await session.execute(_FORGET, {"before": now - keep})
    await record_alive(session, server_id, now)


async def up_since(session: AsyncSession, now: datetime, horizon: datetime) -> datetime:
    """Since when some server has been up without a break until `now`; only lives alive
    at `horizon` or later are read, so an answer before `horizon` may be earlier still."""
    connection = await session.connection()
    rows = await connection.execute(_LIVES_SINCE, {"since": horizon})
    return continuous_since(((as_utc(start), as_utc(alive)) for start, alive in rows), now)


def continuous_since(lives: Iterable[tuple[datetime, datetime]], now: datetime) -> datetime:
    """The start of the unbroken run of `lives` ([started, alive] each) that reaches `now`."""
    since = now
    # Latest-ending first: once a life ends before `since`, every later one does too.
    for started, alive in sorted(lives, key=lambda life: life[1], reverse=True):
        if alive < since:
            break
        since = min(since, started)
    return since
