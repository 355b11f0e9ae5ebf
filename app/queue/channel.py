"""The agent channel: one live connection per machine agent, over which the service
pushes the run it has offered to the machine and tells it when its run ended.

A machine holds at most one channel at a time, recorded on its row (`channel_id`, the
agent process's `channel_agent`, the holding server's life `channel_server`), so every
server agrees on it. Only the server holding a machine's channel offers it runs, with
the same atomic hand-over as a claim (app/domain/run_life), guarded by that channel's
id. While the channel is open the machine is online (its `last_seen_at` is kept fresh);
when it closes the machine is offline at once (`left_at`) and an offer its agent had
not confirmed goes back to the queue, at its old place: the agent starts a flow only
once its confirmation was accepted, and a confirmation and a withdrawal are guarded
UPDATEs of the same row, so exactly one of them happens.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from app.db.models import Machine, Run, ServerLife, new_id
from app.domain.clock import as_utc
from app.domain.enums import ErrorCode, RunStatus
from app.domain.errors import DomainError, not_found
from app.domain.events import Event, EventKind, emit, group_topic, machine_topic
from app.domain.records import locked
from app.domain.run_life import changes
from app.domain.status import is_online
from app.queue.dispatch import Waking, attempt, listen_for_work, next_events
from app.queue.hub import Hub

log = logging.getLogger(__name__)

TAKEN = (
    "another agent holds this machine's channel (the same machine key, on another host"
    " or in another process): a machine runs one agent"
)
# A channel held by another server counts as open while that server is alive: its
# sweeper marks its life every pass (MG_SWEEP_INTERVAL_MS); this many passes missed, and
# at least this many seconds, and it is taken for dead.
HOLDER_PASSES = 3
HOLDER_MIN_SECONDS = 5.0


class ChannelTaken(DomainError):
    """Another agent holds the machine's channel."""

    def __init__(self) -> None:
        super().__init__(ErrorCode.CONFLICT, TAKEN)


@dataclass
class Channel:
    """One open channel: its id, its machine, the agent process holding it."""

    machine_id: str
    agent_id: str
    id: str = field(default_factory=new_id)
    # Runs whose end its own agent reported: the loop needs no read to know what they
    # are, and tells the agent nothing.
    reported: set[str] = field(default_factory=set)


@dataclass(frozen=True)
class Ready:
    """The first message: the machine, and the run it holds (a confirmed one) if any."""

    machine: Machine
    current: Run | None


@dataclass(frozen=True)
class Offered:
    """A run handed to the machine: the agent confirms it, then starts its flow."""

    run: Run


@dataclass(frozen=True)
class Ended:
    """The run the machine held ended, or its offer was withdrawn, by someone else."""

    run_id: str
    run: Run | None


Message = Ready | Offered | Ended

_LEAVE = (
    update(Machine)
    .where(col(Machine.id) == bindparam("machine_id"), col(Machine.channel_id) == bindparam("cid"))
    .values(channel_id=None, channel_agent=None, channel_server=None, left_at=bindparam("now"))
    .returning(col(Machine.group_id))
    .execution_options(synchronize_session=False)
)
_PRESENT = (
    update(Machine)
    .where(col(Machine.channel_id).in_(bindparam("channels", expanding=True)))
    .values(last_seen_at=bindparam("now"))
    .execution_options(synchronize_session=False)
)
_HELD = select(Run).where(
    col(Run.machine_id) == bindparam("machine_id"), col(Run.status) == RunStatus.RUNNING.value
)


class Channels:
    """The channels this server holds, by machine id."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self._open: dict[str, Channel] = {}
        self._closing: set[asyncio.Task[None]] = set()

    def __len__(self) -> int:
        return len(self._open)

    def of(self, machine_id: str) -> Channel | None:
        """The channel this server holds for a machine."""
        return self._open.get(machine_id)

    def reported(self, machine_id: str, run_id: str) -> None:
        """The machine's own agent reported the end of a run (whatever the transport)."""
        channel = self._open.get(machine_id)
        if channel is not None:
            channel.reported.add(run_id)

    async def open(self, machine_id: str, agent_id: str) -> Channel:
        """Take the machine's channel for the agent process `agent_id`.

        A channel the same process held (a socket it lost, maybe not yet noticed closed
        here or on another server) is replaced; one another process holds on a live
        server is not (ChannelTaken). An offer left unconfirmed goes back to the queue.
        """
        channel = Channel(machine_id, agent_id)
        now = self.hub.clock.now()
        async with self.hub.transaction() as session:
            machine = await locked(session, Machine, machine_id)
            if machine is None:
                raise not_found("machine")
            if (
                machine.channel_id is not None
                and machine.channel_agent != agent_id
                and await self._held_elsewhere(session, machine, now)
            ):
                raise ChannelTaken()
            was_online = is_online(machine, now, self.hub.settings.machine_timeout)
            machine.channel_id, machine.channel_agent = channel.id, agent_id
            machine.channel_server = self.hub.server_id
            machine.last_seen_at, machine.left_at = now, None
            await changes.withdraw_offers(session, machine_id)
            # On the machine's topic: a channel it replaces (on any server) ends.
            topics = [machine_topic(machine_id)]
            if machine.group_id and not was_online:
                topics.append(group_topic(machine.group_id))
            emit(session, Event(EventKind.MACHINES_CHANGED, tuple(topics)))
        replaced = self._open.get(machine_id)
        self._open[machine_id] = channel
        if replaced is not None:
            log.info("machine %s: a new channel of its agent replaced the previous", machine_id)
        return channel

    async def _held_elsewhere(self, session: AsyncSession, machine: Machine, now: datetime) -> bool:
        """Whether the machine's recorded channel is still open."""
        if machine.channel_server == self.hub.server_id:
            held = self._open.get(machine.id)
            return held is not None and held.id == machine.channel_id
        alive = await session.scalar(
            select(col(ServerLife.alive_at)).where(col(ServerLife.id) == machine.channel_server)
        )
        stale = max(HOLDER_MIN_SECONDS, HOLDER_PASSES * self.hub.settings.sweep_interval)
        return alive is not None and as_utc(alive) >= now - timedelta(seconds=stale)

    async def close(self, channel: Channel) -> None:
        """The channel's socket closed: the machine is offline at once, and an offer its
        agent did not confirm goes back to the queue. Runs to its end even when the
        caller is cancelled (a server stopping)."""
        if self._open.get(channel.machine_id) is channel:
            del self._open[channel.machine_id]
        task = asyncio.create_task(self._leave(channel))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)
        await asyncio.shield(task)

    async def _leave(self, channel: Channel) -> None:
        try:
            async with self.hub.transaction() as session:
                values = {"machine_id": channel.machine_id, "cid": channel.id}
                left = await session.execute(_LEAVE, {**values, "now": self.hub.clock.now()})
                row = left.one_or_none()
                if row is None:
                    return  # replaced by a newer channel, or the machine is gone
                await changes.withdraw_offers(session, channel.machine_id)
                topics = [machine_topic(channel.machine_id)]
                if row.group_id:
                    topics.append(group_topic(row.group_id))
                emit(session, Event(EventKind.MACHINES_CHANGED, tuple(topics)))
        except Exception:  # the sweeper withdraws the offer; the machine times out
            log.exception("closing the channel of machine %s failed", channel.machine_id)

    async def drain(self) -> None:
        """Wait for closing channels to be recorded (a server stopping)."""
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)

    async def keep_present(self) -> None:
        """Keep the machines of open channels online (a lifespan task): their
        `last_seen_at` is refreshed well within MG_MACHINE_TIMEOUT, in one statement."""
        every = max(0.5, self.hub.settings.machine_timeout / 4)
        while True:
            await asyncio.sleep(every)
            channels = [channel.id for channel in self._open.values()]
            if not channels:
                continue
            try:
                async with self.hub.db.write() as session:
                    await session.execute(
                        _PRESENT, {"channels": channels, "now": self.hub.clock.now()}
                    )
            except Exception:  # the next round tries again
                log.exception("keeping the channels' machines online failed")

    async def messages(self, channel: Channel) -> AsyncIterator[Message]:
        """What the agent is told, from Ready on, until the channel is replaced or its
        machine is gone: each run offered to it and each end of its run by someone else."""
        hub, machine_id = self.hub, channel.machine_id
        loop = asyncio.get_running_loop()
        mine = machine_topic(machine_id)

        async def offer(session: AsyncSession) -> Run | None:
            return await changes.offer(session, machine_id, channel.id, hub.clock.now())

        machine, held = await self._state(machine_id)
        if machine is None or machine.channel_id != channel.id:
            return
        yield Ready(machine, held)
        held_id = held.id if held is not None else None
        while True:
            group_id = machine.group_id
            async with listen_for_work(hub.bus, machine_id, group_id) as inbox:
                # Changes between the last read and listening: look once more.
                waking = Waking(at=loop.time())
                if held_id is not None:
                    ended, held_id = await self._follow(channel, held_id)
                    if ended is not None:
                        yield ended
                while True:
                    if held_id is None:
                        run = await attempt(hub, machine_id, group_id, waking, offer)
                        if run is not None:
                            held_id = run.id
                            yield Offered(run)
                    events = await next_events(inbox, None)
                    waking.note(machine_id, events, loop.time())
                    look_again = any(
                        event.kind is EventKind.RESYNC
                        or (event.kind is EventKind.MACHINES_CHANGED and mine in event.topics)
                        for event in events
                    )
                    if held_id is not None and any(e.run_id == held_id for e in events):
                        ended, held_id = await self._follow(channel, held_id)
                        if ended is not None:
                            yield ended
                    if look_again:
                        machine, _held = await self._state(machine_id)
                        if machine is None or machine.channel_id != channel.id:
                            return  # replaced by a newer channel, or the machine is gone
                        if machine.group_id != group_id:
                            break  # listen on its new group's topic

    async def _state(self, machine_id: str) -> tuple[Machine | None, Run | None]:
        async with self.hub.db.read() as session:
            machine = await session.get(Machine, machine_id)
            held = await session.scalar(_HELD, {"machine_id": machine_id})
        return machine, held

    async def _follow(self, channel: Channel, run_id: str) -> tuple[Ended | None, str | None]:
        """A change of the run the machine holds: (what to tell the agent, the run it
        holds now)."""
        if run_id in channel.reported:
            channel.reported.discard(run_id)
            return None, None  # its agent reported its end
        async with self.hub.db.read() as session:
            run = await session.get(Run, run_id)
        if run is not None and run.machine_id == channel.machine_id:
            if run.status == RunStatus.RUNNING.value:
                return None, run_id
            return Ended(run_id, run), None
        return Ended(run_id, None), None  # withdrawn (or gone): not the machine's any more


@contextlib.asynccontextmanager
async def held_channel(
    channels: Channels, machine_id: str, agent_id: str
) -> AsyncIterator[Channel]:
    """A channel open for the duration of the context, closed however it ends."""
    channel = await channels.open(machine_id, agent_id)
    try:
        yield channel
    finally:
        await channels.close(channel)
