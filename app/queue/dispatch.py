"""Waiting for work: an agent's long-polling claim, and the waits the channel shares.

How a run is handed to a machine (claim, offer) is the run's life
(app/domain/run_life/); this is when to try: woken by events on the machine's topics,
not by polling the database.
"""

from __future__ import annotations

import asyncio
import math
import weakref
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.models import Machine, Run
from app.deadline import waiting
from app.domain.events import Event, EventKind, group_topic, machine_topic
from app.domain.run_life import changes
from app.queue.events import Listening, LocalEventBus
from app.queue.hub import Hub

MAX_WAIT_SECONDS = 60
# How often a long-polling claim checks that its agent is still connected.
AGENT_CHECK_SECONDS = 0.5
# Events that can make work claimable for a waiting machine.
WAKING = frozenset(
    {
        EventKind.RUN_QUEUED,
        EventKind.RUN_CHANGED,
        EventKind.GROUP_CHANGED,
        EventKind.MACHINES_CHANGED,
        EventKind.RESYNC,  # events may have been missed: look again
    }
)
# A waiting machine is woken by a run changing only if it is its own (on its machine's
# topic): the group's other runs being claimed and finished are not listened to at all.
GROUP_RUNS_QUIET = frozenset({EventKind.RUN_CHANGED})


def listen_for_work(
    bus: LocalEventBus, machine_id: str, group_id: str | None
) -> AbstractAsyncContextManager[Listening]:
    """Listen as a machine waiting for work: on its topic, and on its group's."""
    if group_id is None:
        return bus.listen(machine_topic(machine_id))
    group = group_topic(group_id)
    return bus.listen(machine_topic(machine_id), group, quiet={group: GROUP_RUNS_QUIET})


# Hands the machine's next run over in the caller's write transaction (claim or offer).
Take = Callable[[AsyncSession], Awaitable[Run | None]]


@dataclass
class _Queue:
    """What this process knows about one group's queue, shared by the machines waiting on it.

    Claim attempts on one queue take turns (`lock`), so a run queued while many machines
    wait wakes them all but only the first writes: the next ones find the queue empty in
    a read, and once one has, those woken no later skip even that read (`empty_since`).
    Only an optimisation: the claim's write transaction is what guarantees exactly once,
    across processes too.
    """

    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    # loop.time() at which a read that found no queued run in the group began.
    empty_since: float = -math.inf


# Per group id; an entry lives while some claim holds it.
_queues: weakref.WeakValueDictionary[str, _Queue] = weakref.WeakValueDictionary()


def _queue_for(group_id: str) -> _Queue:
    queue = _queues.get(group_id)
    if queue is None:
        queue = _queues[group_id] = _Queue()
    return queue


@dataclass(frozen=True)
class Outcome:
    """What one attempt found: the run handed over, the machine's group if that group's
    queue was empty, and whether the machine could take nothing whatever is queued (it
    holds a run, or its group is in maintenance)."""

    run: Run | None = None
    empty_group: str | None = None
    held_back: bool = False


async def take_if_any(hub: Hub, machine_id: str, take: Take) -> Outcome:
    """Hand the machine its next run if a cheap read says it could.

    The write transaction is skipped when the machine holds a run, its group is in
    maintenance, or nothing is queued for it.
    """
    async with hub.db.read() as session:
        outlook = await changes.outlook(session, machine_id)
    empty_group = outlook.group_id if not outlook.group_work else None
    if outlook.busy or outlook.maintenance:
        return Outcome(empty_group=empty_group, held_back=True)
    if not (outlook.group_work or outlook.own_work):
        return Outcome(empty_group=empty_group)
    try:
        async with hub.transaction() as session:
            # Take the write lock before reading the clock, so startedAt follows hand-over order.
            await session.connection()
            return Outcome(run=await take(session))
    except IntegrityError:
        # The same machine took a run at the same moment through another server: it
        # holds that run, and this attempt changed nothing.
        return Outcome()


def _wakes(machine_id: str, event: Event) -> bool:
    """Whether an event can make work claimable for the machine.

    A run changing elsewhere in the group (claimed, finished, re-prioritised, cancelled)
    frees no work for this machine: only its own runs' changes, new runs, and group or
    machine changes can.
    """
    if event.kind is EventKind.RUN_CHANGED:
        return machine_topic(machine_id) in event.topics
    return event.kind in WAKING


@dataclass
class Waking:
    """Whether the events since the last attempt call for another, and when they came."""

    woken: bool = True
    only_group_runs: bool = False
    at: float = -math.inf
    # The last attempt found the machine busy or its group in maintenance: runs queued in
    # the group change nothing until its own run ends or the group changes.
    held_back: bool = False

    def note(self, machine_id: str, events: list[Event], now: float) -> None:
        """Take in the events that arrived (all of them: one attempt answers them all)."""
        own = machine_topic(machine_id)
        waking = [event for event in events if _wakes(machine_id, event)]
        if self.held_back:
            waking = [e for e in waking if e.kind is not EventKind.RUN_QUEUED or own in e.topics]
        self.woken, self.at = bool(waking), now
        self.only_group_runs = all(
            event.kind is EventKind.RUN_QUEUED and own not in event.topics for event in waking
        )


async def attempt(
    hub: Hub, machine_id: str, group_id: str | None, waking: Waking, take: Take
) -> Run | None:
    """One attempt to hand the machine a run, if the events call for one.

    Attempts on one queue take turns, and a machine woken only by runs queued in its
    group skips its attempt once a look that began after they were announced found the
    group's queue empty: they are taken.
    """
    if not waking.woken:
        return None
    loop = asyncio.get_running_loop()
    queue = _queue_for(group_id or machine_id)
    with waiting():  # others' attempts are not this request's work (MG_REQUEST_TIMEOUT)
        await queue.lock.acquire()
    try:
        if waking.only_group_runs and waking.at < queue.empty_since:
            return None
        began = loop.time()
        with hub.metrics.claim_latency.time():
            outcome = await take_if_any(hub, machine_id, take)
        waking.held_back = outcome.held_back
        if outcome.empty_group is not None and outcome.empty_group == group_id:
            queue.empty_since = max(queue.empty_since, began)
        return outcome.run
    finally:
        queue.lock.release()


async def next_events(inbox: Listening, wait_seconds: float | None) -> list[Event]:
    """The next event and every one already waiting behind it ([] after `wait_seconds`)."""
    with waiting():  # not work: outside the request's deadline (MG_REQUEST_TIMEOUT)
        event = await inbox.next(wait_seconds)
    return [event, *inbox.drain()] if event is not None else []


async def claim_next_run(
    hub: Hub,
    machine: Machine,
    wait_seconds: int,
    agent_gone: Callable[[], Awaitable[bool]] | None = None,
) -> Run | None:
    """Claim at once, or wait up to `wait_seconds` and claim as soon as work is queued.

    Once `agent_gone` says the agent hung up, it stops waiting without claiming: a run
    claimed for an agent that is not listening would never start. `machine` is the row
    the request authenticated with: its group says which queue's events to listen to.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + max(0, min(wait_seconds, MAX_WAIT_SECONDS))
    machine_id, group_id = machine.id, machine.group_id

    async def take(session: AsyncSession) -> Run | None:
        return await changes.claim(session, machine_id, hub.clock.now())

    async with listen_for_work(hub.bus, machine_id, group_id) as inbox:
        waking = Waking(at=loop.time())
        while True:
            if agent_gone is not None and await agent_gone():
                return None
            run = await attempt(hub, machine_id, group_id, waking, take)
            if run is not None:
                return run
            remaining = deadline - loop.time()
            if remaining <= 0:
                return None
            if agent_gone is not None:
                remaining = min(remaining, AGENT_CHECK_SECONDS)
            waking.note(machine_id, await next_events(inbox, remaining), loop.time())
