"""Live status over graphql-transport-ws: `queueStatus` and `runUpdates`."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from datetime import datetime
from functools import partial

import strawberry
from graphql import GraphQLError

from app.db import models
from app.db.models import MachineGroup
from app.domain.access import Seen, governed
from app.domain.enums import ErrorCode, RunStatus
from app.domain.errors import DomainError, not_found
from app.domain.events import EventKind, group_topic, machine_topic, run_topic, user_topic
from app.domain.groups import GROUP
from app.domain.identity import Refusal
from app.domain.queue import queue_counts
from app.domain.run_life.transitions import FINAL
from app.domain.runs import RUN
from app.graphql.context import Info
from app.graphql.types.run import RunType
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


def _message(info: Info, group: Seen[MachineGroup], snapshot: Snapshot) -> QueueStatusType:
    info.context.refresh()  # the run's fields resolve through fresh loaders
    counts = snapshot.counts
    # Only runs of the group's queue are published on its topic: seen with the group.
    runs = governed(group, [snapshot.run]) if snapshot.run is not None else []
    return QueueStatusType(
        group_id=strawberry.ID(group.record.id),
        queued_count=counts.queued,
        running_count=counts.running,
        machine_count=counts.machines,
        online_machine_count=counts.online,
        idle_machine_count=counts.idle,
        changed_run=RunType.of(runs[0]) if runs else None,
        at=snapshot.at,
    )


# Only these can change who sees a group; run and machine changes cannot.
ACCESS_EVENTS = frozenset({EventKind.ACCESS_CHANGED, EventKind.RESYNC})
ENDED = "the stream ended"


def signed_out(refusal: Refusal) -> GraphQLError:
    """The last message of a stream whose viewer's token stopped working meanwhile."""
    return GraphQLError(f"{ENDED}: {refusal.message}", extensions={"code": refusal.code})


def out_of_sight(what: str) -> DomainError:
    """The last message of a stream whose record the viewer no longer sees."""
    return DomainError(
        ErrorCode.NOT_FOUND,
        f"{ENDED}: you no longer see this {what} (a grant was revoked or a role removed)",
    )


@strawberry.type
class LiveSubscription:
    @strawberry.subscription(
        description="First a snapshot (changedRun null), then one message per change of the"
        " group's queue, runs or machines. When the viewer loses access or the group is"
        " deleted, a last message's error says why, and the stream ends."
    )
    async def queue_status(
        self, info: Info, group_id: strawberry.ID
    ) -> AsyncGenerator[QueueStatusType, None]:
        state, viewer = info.context.app, info.context.viewer
        group = await _seen_group(info, group_id)
        # Listen before the snapshot, so no change between the two is missed.
        async with (
            state.bus.listen(group_topic(group_id), user_topic(viewer.id)) as inbox,
            state.metrics.subscription("queueStatus"),
        ):
            first = await _snapshot(state, group_id, None)
            if first is None:
                raise _deleted()
            yield _message(info, group, first)
            while True:
                event = await inbox.next()
                if event is None:
                    return  # the server is stopping
                if event.kind is EventKind.GROUP_DELETED:
                    raise _deleted()
                if event.kind in ACCESS_EVENTS:
                    # Decided again for the viewer as they are now (deactivated, a role
                    # removed, a grant revoked): the stream ends when they stop seeing it.
                    if (refusal := await info.context.renew()) is not None:
                        raise signed_out(refusal)
                    seen = await info.context.loaders.seen_groups.load(group_id)
                    if seen is None:
                        raise out_of_sight(GROUP)
                    group = seen
                snapshot = await state.snapshots.for_event(
                    group_id, event, partial(_snapshot, state, group_id, event.run_id)
                )
                if snapshot is None:
                    raise _deleted()
                yield _message(info, group, snapshot)

    @strawberry.subscription(
        description="Every status change of one run, ending after its final status, or"
        " when the viewer stops seeing the run (with an error saying why)."
    )
    async def run_updates(self, info: Info, id: strawberry.ID) -> AsyncGenerator[RunType, None]:
        state, viewer = info.context.app, info.context.viewer
        seen = await info.context.loaders.seen_runs.load(id)
        if seen is None:
            raise not_found(RUN, "id")
        run = seen.record
        # Who sees a run changes with access to its queue: listen there too.
        queue = (
            group_topic(run.group_id)
            if run.group_id
            else machine_topic(run.target_machine_id or "")
        )
        async with (
            state.bus.listen(run_topic(run.id), user_topic(viewer.id), queue) as inbox,
            state.metrics.subscription("runUpdates"),
        ):
            # Read again once listening, so no change between the two is missed.
            info.context.refresh()
            current = await info.context.loaders.seen_runs.load(run.id)
            while current is not None:
                yield RunType.of(current)
                last = current.record.status
                if RunStatus(last) in FINAL:
                    return
                while current is not None and current.record.status == last:
                    event = await inbox.next()
                    if event is None:
                        return
                    if event.run_id not in (None, run.id):
                        continue  # another run of the same queue
                    # Decided for the viewer as they are now: a revoke ends the stream.
                    if (refusal := await info.context.renew()) is not None:
                        raise signed_out(refusal)
                    current = await info.context.loaders.seen_runs.load(run.id)
            raise out_of_sight(RUN)


def _deleted() -> DomainError:
    return DomainError(ErrorCode.NOT_FOUND, f"{ENDED}: the {GROUP} was deleted")


async def _seen_group(info: Info, group_id: str) -> Seen[MachineGroup]:
    """The group, if the viewer sees it; NOT_FOUND otherwise, as for a query."""
    group = await info.context.loaders.seen_groups.load(group_id)
    if group is None:
        raise not_found(GROUP, "groupId")
    return group
