"""Live status over graphql-transport-ws: `queueStatus` and `runUpdates`."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from datetime import datetime
from functools import partial

import strawberry

from app.db import models
from app.domain.enums import RunStatus
from app.domain.groups import group_if_still_visible, visible_group
from app.domain.lifecycle import FINAL
from app.domain.queue import queue_counts
from app.domain.runs import visible_run
from app.graphql.context import Info
from app.graphql.types.run import RunType
from app.queue.events import EventKind, group_topic, run_topic, user_topic
from app.queue.snapshots import Snapshot
from app.state import AppState


@strawberry.type(name="QueueStatus")
class QueueStatusType:
    group_id: strawberry.ID
    queued_count: int
    running_count: int
    machine_count: int
    online_machine_count: int
    idle_machine_count: int
    changed_run: RunType | None = strawberry.field(
        description="The run whose change caused this message; null in the first (snapshot)"
        " message and for machine or group changes."
    )
    at: datetime


async def _snapshot(state: AppState, group_id: str, run_id: str | None) -> Snapshot | None:
    """The group's counts now (None once the group is gone)."""
    now = state.services.clock.now()
    async with state.db.read() as session:
        group = await session.get(models.MachineGroup, group_id)
        if group is None:
            return None
        counts = await queue_counts(session, group, now, state.settings.machine_timeout)
        run = await session.get(models.Run, run_id) if run_id else None
    return Snapshot(counts=counts, run=run, at=now)


def _message(info: Info, group_id: str, snapshot: Snapshot) -> QueueStatusType:
    info.context.refresh()  # the run's fields resolve through fresh loaders
    counts = snapshot.counts
    return QueueStatusType(
        group_id=strawberry.ID(group_id),
        queued_count=counts.queued,
        running_count=counts.running,
        machine_count=counts.machines,
        online_machine_count=counts.online,
        idle_machine_count=counts.idle,
        changed_run=RunType.of(snapshot.run) if snapshot.run is not None else None,
        at=snapshot.at,
    )


# Only these can change who sees a group; run and machine changes cannot.
ACCESS_EVENTS = frozenset({EventKind.ACCESS_CHANGED, EventKind.RESYNC})


@strawberry.type
class Subscription:
    @strawberry.subscription(
        description="First a snapshot (changedRun null), then one message per change of the"
        " group's queue, runs or machines. Ends when the viewer loses access."
    )
    async def queue_status(
        self, info: Info, group_id: strawberry.ID
    ) -> AsyncGenerator[QueueStatusType, None]:
        state, caller = info.context.app, info.context.caller
        async with state.db.read() as session:
            group = await visible_group(session, caller, group_id)
        # Listen before the snapshot, so no change between the two is missed.
        async with (
            state.bus.listen(group_topic(group.id), user_topic(caller.viewer.id)) as inbox,
            state.metrics.subscription("queueStatus"),
        ):
            first = await _snapshot(state, group.id, None)
            if first is None:
                return
            yield _message(info, group.id, first)
            while True:
                event = await inbox.next()
                if event is None or event.kind is EventKind.GROUP_DELETED:
                    return
                if event.kind in ACCESS_EVENTS:
                    async with state.db.read() as session:
                        still = await group_if_still_visible(
                            session, state.services, caller.viewer.id, group.id
                        )
                    if still is None:
                        return
                snapshot = await state.snapshots.for_event(
                    group.id, event, partial(_snapshot, state, group.id, event.run_id)
                )
                if snapshot is None:
                    return
                yield _message(info, group.id, snapshot)

    @strawberry.subscription(
        description="Every status change of one run, ending after its final status."
    )
    async def run_updates(self, info: Info, id: strawberry.ID) -> AsyncGenerator[RunType, None]:
        state, caller = info.context.app, info.context.caller
        async with state.db.read() as session:
            run = await visible_run(session, caller, id)
        async with (
            state.bus.listen(run_topic(run.id)) as inbox,
            state.metrics.subscription("runUpdates"),
        ):
            async with state.db.read() as session:
                current = await session.get(models.Run, run.id)
            assert current is not None
            info.context.refresh()
            yield RunType.of(current)
            last = current.status
            while RunStatus(last) not in FINAL:
                if await inbox.next() is None:
                    return
                async with state.db.read() as session:
                    current = await session.get(models.Run, run.id)
                if current is None:
                    return
                if current.status != last:
                    last = current.status
                    info.context.refresh()
                    yield RunType.of(current)
