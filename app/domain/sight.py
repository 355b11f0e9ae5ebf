"""What one principal sees, decided a list at a time by the rules of `app/domain/access.py`.

Every record the API hands out by id, or reaches through another record (a run's group,
a connection's machine), passes through here first. A list is decided at once: the
facts it needs (the viewer's grants, the groups governing machines) are read in a
constant number of statements, and none when the rules decide without them (the
viewer's own records, an administrator's environments, an agent's own machine).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection, Sequence
from contextlib import asynccontextmanager
from typing import TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from app.db.engine import Database
from app.db.models import Connection, Machine, MachineGroup, Run
from app.domain import batches
from app.domain.access import (
    Owned,
    Seen,
    decided_without_grant,
    sees_owned,
    sees_targeted,
)
from app.domain.caller import MachineAgent, Principal, Viewer
from app.domain.enums import AccessLevel, RecordKind

G = TypeVar("G", bound=Owned)
W = TypeVar("W", Run, Connection)
# What decides seeing a run or a connection: who made it, and its group or machine.
_Target = tuple[str, str | None, str | None]


class Sight:
    """The records one principal may see, decided in batches.

    A machine agent sees its own machine, the group it is in, and the runs it holds or
    held, nothing else.
    """

    def __init__(self, db: Database, principal: Principal | None) -> None:
        self._db = db
        self._viewer = principal if isinstance(principal, Viewer) else None
        machine = principal.machine if isinstance(principal, MachineAgent) else None
        self._machine_id = machine.id if machine else None
        self._group_id = machine.group_id if machine else None

    # Each decision reads its facts in the caller's session when given one (a loader's,
    # which read the records), else in a read session of its own, opened only if needed.

    async def groups(
        self, groups: Sequence[G], session: AsyncSession | None = None
    ) -> list[Seen[G] | None]:
        """Each group, if seen."""
        viewer = self._viewer
        if viewer is None or not groups:
            return [Seen(g) if g.id == self._group_id else None for g in groups]
        async with self._reading(session) as reading:
            seen = await _seen_groups(reading, viewer, groups)
        return [Seen(group) if group.id in seen else None for group in groups]

    async def machines(
        self, machines: Sequence[Machine], session: AsyncSession | None = None
    ) -> list[Seen[Machine] | None]:
        """Each machine, if seen (a machine in a group: if its group is seen)."""
        viewer = self._viewer
        if viewer is None or not machines:
            return [Seen(m) if m.id == self._machine_id else None for m in machines]
        async with self._reading(session) as reading:
            seen = await _seen_machines(reading, viewer, machines)
        return [Seen(machine) if machine.id in seen else None for machine in machines]

    async def runs(
        self, runs: Sequence[Run], session: AsyncSession | None = None
    ) -> list[Seen[Run] | None]:
        """Each run, if seen: by its starter, and by those who see its queue."""
        viewer = self._viewer
        if viewer is None:
            return [Seen(run) if run.machine_id == self._machine_id else None for run in runs]
        targets = [(run.started_by_id, run.group_id, run.target_machine_id) for run in runs]
        return await self._targeted(viewer, runs, targets, session)

    async def connections(
        self, connections: Sequence[Connection], session: AsyncSession | None = None
    ) -> list[Seen[Connection] | None]:
        """Each connection, if seen: by its owner, and by those who see its target."""
        viewer = self._viewer
        if viewer is None:
            return [None] * len(connections)
        targets = [(c.owner_id, c.group_id, c.machine_id) for c in connections]
        return await self._targeted(viewer, connections, targets, session)

    @asynccontextmanager
    async def _reading(self, session: AsyncSession | None) -> AsyncIterator[AsyncSession]:
        if session is not None:
            yield session
            return
        async with self._db.read() as own:
            yield own

    async def _targeted(
        self,
        viewer: Viewer,
        rows: Sequence[W],
        targets: Sequence[_Target],
        session: AsyncSession | None,
    ) -> list[Seen[W] | None]:
        """Runs or connections, given each one's (maker, group, machine)."""
        others = [target for target in targets if target[0] != viewer.id]
        groups, machines = await self._targets(
            viewer,
            {group for _maker, group, _machine in others if group},
            {machine for _maker, group, machine in others if not group and machine},
            session,
        )
        return [
            Seen(row)
            if sees_targeted(viewer.id, maker, group, group in groups, machine in machines)
            else None
            for row, (maker, group, machine) in zip(rows, targets, strict=True)
        ]

    async def _targets(
        self,
        viewer: Viewer,
        group_ids: Collection[str],
        machine_ids: Collection[str],
        session: AsyncSession | None,
    ) -> tuple[set[str], set[str]]:
        """The ids, among these, of the groups and machines the viewer sees."""
        if not group_ids and not machine_ids:
            return set(), set()
        async with self._reading(session) as session:
            groups = await batches.rows_by_id(session, MachineGroup, list(group_ids))
            machines = await batches.rows_by_id(session, Machine, list(machine_ids))
            return (
                await _seen_groups(session, viewer, [g for g in groups if g is not None]),
                await _seen_machines(session, viewer, [m for m in machines if m is not None]),
            )


async def _levels(
    session: AsyncSession, viewer: Viewer, kind: RecordKind, records: Sequence[Owned]
) -> dict[str, AccessLevel | None]:
    """The viewer's grants on those of `records` that owning or administering does not
    decide already (no statement when there are none)."""
    undecided = [record.id for record in records if not decided_without_grant(viewer, record)]
    if not undecided:
        return {}
    levels = await batches.granted_levels(session, viewer.id, kind, undecided)
    return dict(zip(undecided, levels, strict=True))


async def _seen_groups(session: AsyncSession, viewer: Viewer, groups: Sequence[Owned]) -> set[str]:
    granted = await _levels(session, viewer, RecordKind.MACHINE_GROUP, groups)
    return {group.id for group in groups if sees_owned(viewer, group, granted.get(group.id))}


async def _seen_machines(
    session: AsyncSession, viewer: Viewer, machines: Sequence[Machine]
) -> set[str]:
    """A machine in a group is seen with its group; a standalone one by its own grants."""
    group_ids = list({m.group_id for m in machines if m.group_id})
    groups = await batches.rows_by_id(session, MachineGroup, group_ids)
    seen_groups = await _seen_groups(session, viewer, [g for g in groups if g is not None])
    standalone = [m for m in machines if m.group_id is None]
    granted = await _levels(session, viewer, RecordKind.MACHINE, standalone)
    return {m.id for m in machines if m.group_id in seen_groups} | {
        m.id for m in standalone if sees_owned(viewer, m, granted.get(m.id))
    }
