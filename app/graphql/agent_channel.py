"""`agentChannel`: the machine agent's live connection (app/queue/channel.py).

The agent subscribes once, with its machine key in `connection_init`; the service sends
READY (the machine, and the run it holds), then RUN for each run it offers the machine
(the agent confirms it with `confirmRun` on the same socket, then starts its flow) and
RUN_ENDED when someone else ends the run the machine holds (cancelled, timed out) or
withdraws an offer. Records are handed out through the permission path, as everywhere:
an agent sees its machine and the runs its machine holds or held.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from enum import Enum

import strawberry

from app.domain.errors import validation
from app.graphql.context import Info
from app.graphql.types.machine import MachineType
from app.graphql.types.run import RunType
from app.queue.channel import Ended, Message, Offered, Ready, held_channel

MAX_AGENT_ID = 100


@strawberry.enum
class AgentMessageKind(Enum):
    READY = "READY"
    RUN = "RUN"
    RUN_ENDED = "RUN_ENDED"


@strawberry.type
class AgentMessage:
    kind: AgentMessageKind
    machine: MachineType | None = strawberry.field(description="READY: the machine.")
    run: RunType | None = strawberry.field(
        description="READY: the run the machine holds (null: none); RUN: the run offered, to"
        " confirm (confirmRun) before its flow starts; RUN_ENDED: the run, as it ended (null"
        " for an offer withdrawn: it is not the machine's any more)."
    )
    run_id: strawberry.ID | None = strawberry.field(
        description="RUN and RUN_ENDED: the run's id (also when `run` is null)."
    )


async def _message(info: Info, message: Message) -> AgentMessage:
    """The API's form of a channel message, built from what the agent may see."""
    info.context.refresh()  # nothing cached for an earlier message is served again
    sight = info.context.sight
    if isinstance(message, Ready):
        (machine,) = await sight.machines([message.machine])
        (current,) = await sight.runs([message.current]) if message.current else (None,)
        return AgentMessage(
            kind=AgentMessageKind.READY,
            machine=MachineType.of(machine) if machine else None,
            run=RunType.of(current) if current else None,
            run_id=strawberry.ID(message.current.id) if message.current else None,
        )
    if isinstance(message, Offered):
        (offered,) = await sight.runs([message.run])
        return AgentMessage(
            kind=AgentMessageKind.RUN,
            machine=None,
            run=RunType.of(offered) if offered else None,
            run_id=strawberry.ID(message.run.id),
        )
    assert isinstance(message, Ended)
    (ended,) = await sight.runs([message.run]) if message.run else (None,)
    return AgentMessage(
        kind=AgentMessageKind.RUN_ENDED,
        machine=None,
        run=RunType.of(ended) if ended else None,
        run_id=strawberry.ID(message.run_id),
    )


@strawberry.type
class AgentSubscription:
    @strawberry.subscription(
        description="Machine agents: the machine's live channel. READY first, then RUN for"
        " each run offered to the machine and RUN_ENDED when its run ends otherwise than by"
        " its own report. One channel per machine: `agentId` names the agent process (a"
        " random id it keeps for its life); another process's subscription is refused"
        " (CONFLICT) while the channel is open. While it is open the machine is online;"
        " once it closes, offline at once, and an offer not yet confirmed returns to the"
        " queue."
    )
    async def agent_channel(self, info: Info, agent_id: str) -> AsyncGenerator[AgentMessage, None]:
        machine = info.context.agent.machine
        if not 0 < len(agent_id) <= MAX_AGENT_ID:
            raise validation(f"agentId must be 1-{MAX_AGENT_ID} characters", "agentId")
        channels = info.context.app.channels
        async with held_channel(channels, machine.id, agent_id) as channel:
            async for message in channels.messages(channel):
                yield await _message(info, message)
