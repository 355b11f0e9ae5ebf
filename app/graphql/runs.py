"""Connections and runs: queries, the starter's mutations and the machine agent's."""

from __future__ import annotations

from typing import Any

import strawberry
from starlette.requests import Request
from strawberry.scalars import JSON

from app.db import models
from app.domain import connections, runs
from app.domain.enums import RunOutcome, RunStatus
from app.domain.errors import DomainError
from app.domain.run_life import changes, requests
from app.graphql.context import Info
from app.graphql.mutation import attempt, attempt_as_agent, shown
from app.graphql.paging import to_connection
from app.graphql.types.common import MutationError, RunMode, RunPriority
from app.graphql.types.run import ConnectionType, RunConnection, RunEdge, RunType
from app.queue import dispatch


@strawberry.input
class CreateConnectionInput:
    name: str
    machine_id: strawberry.ID | None = None
    group_id: strawberry.ID | None = None
    username: str
    password: str


@strawberry.input
class UpdateConnectionInput:
    id: strawberry.ID
    machine_id: strawberry.ID | None = None
    group_id: strawberry.ID | None = None
    username: str | None = None
    password: str | None = None


@strawberry.input
class StartRunInput:
    connection_id: strawberry.ID
    flow_name: str
    run_mode: RunMode | None = RunMode.UNATTENDED
    priority: RunPriority | None = RunPriority.NORMAL
    inputs: JSON | None = None


@strawberry.type
class ConnectionPayload:
    connection: ConnectionType | None
    errors: list[MutationError]

    @classmethod
    async def of(
        cls, info: Info, result: tuple[models.Connection | None, list[MutationError]]
    ) -> ConnectionPayload:
        """The payload of a connection mutation."""
        row, errors = result
        seen = await shown(info.context.sight.connections, row)
        return cls(connection=ConnectionType.of(seen) if seen else None, errors=errors)


@strawberry.type
class RunPayload:
    run: RunType | None
    errors: list[MutationError]

    @classmethod
    async def of(
        cls, info: Info, result: tuple[models.Run | None, list[MutationError]]
    ) -> RunPayload:
        """The payload of a run mutation (for an agent: the run its machine holds)."""
        row, errors = result
        seen = await shown(info.context.sight.runs, row)
        return cls(run=RunType.of(seen) if seen else None, errors=errors)


@strawberry.type
class RunQuery:
    @strawberry.field(description="Connections the viewer owns or whose target they see.")
    async def connections(self, info: Info) -> list[ConnectionType]:
        caller = info.context.caller
        async with info.context.db.read() as session:
            rows = await connections.list_connections(session, caller)
        return [ConnectionType.of(seen) for seen in rows]

    @strawberry.field
    async def run(self, info: Info, id: strawberry.ID) -> RunType | None:
        info.context.viewer  # noqa: B018  (agents may not look runs up)
        seen = await info.context.loaders.seen_runs.load(id)
        return RunType.of(seen) if seen else None

    @strawberry.field(description="Run history the viewer may see, newest first.")
    async def runs(
        self,
        info: Info,
        group_id: strawberry.ID | None = None,
        machine_id: strawberry.ID | None = None,
        status: list[RunStatus] | None = None,
        first: int | None = 50,
        after: str | None = None,
    ) -> RunConnection:
        caller = info.context.caller
        async with info.context.db.read() as session:
            page = await runs.run_history(
                session,
                caller,
                group_id=group_id,
                machine_id=machine_id,
                statuses=status,
                first=first,
                after=after,
            )
        return to_connection(page, RunType.of, RunEdge, RunConnection)


@strawberry.type
class RunMutation:
    @strawberry.mutation(description="The password is stored encrypted and never returned.")
    async def create_connection(
        self, info: Info, input: CreateConnectionInput
    ) -> ConnectionPayload:
        return await ConnectionPayload.of(
            info,
            await attempt(
                info,
                lambda s, c: connections.create_connection(
                    s,
                    c,
                    name=input.name,
                    machine_id=input.machine_id,
                    group_id=input.group_id,
                    username=input.username,
                    password=input.password,
                ),
            ),
        )

    @strawberry.mutation(description="Retargeting makes a broken connection active again.")
    async def update_connection(
        self, info: Info, input: UpdateConnectionInput
    ) -> ConnectionPayload:
        return await ConnectionPayload.of(
            info,
            await attempt(
                info,
                lambda s, c: connections.update_connection(
                    s,
                    c,
                    input.id,
                    machine_id=input.machine_id,
                    group_id=input.group_id,
                    username=input.username,
                    password=input.password,
                ),
            ),
        )

    @strawberry.mutation
    async def start_run(self, info: Info, input: StartRunInput) -> RunPayload:
        inputs: Any = input.inputs
        return await RunPayload.of(
            info,
            await attempt(
                info,
                lambda s, c: requests.start_run(
                    s,
                    c,
                    connection_id=input.connection_id,
                    flow_name=input.flow_name,
                    run_mode=input.run_mode or RunMode.UNATTENDED,
                    priority=input.priority or RunPriority.NORMAL,
                    inputs=inputs,
                ),
            ),
        )

    @strawberry.mutation
    async def cancel_run(self, info: Info, id: strawberry.ID) -> RunPayload:
        return await RunPayload.of(
            info, await attempt(info, lambda s, c: requests.cancel_run(s, c, id))
        )

    @strawberry.mutation
    async def set_run_priority(
        self, info: Info, id: strawberry.ID, priority: RunPriority
    ) -> RunPayload:
        return await RunPayload.of(
            info, await attempt(info, lambda s, c: requests.set_priority(s, c, id, priority))
        )

    @strawberry.mutation(
        description="Machine agents: long-poll up to waitSeconds (at most 60); "
        "run is null when nothing was assigned."
    )
    async def claim_next_run(self, info: Info, wait_seconds: int | None = 0) -> RunPayload:
        state, request = info.context.app, info.context.request
        # Over HTTP, stop waiting once the agent hangs up (a closed WebSocket cancels the call).
        agent_gone = request.is_disconnected if isinstance(request, Request) else None
        try:
            machine = info.context.agent.machine
            row = await dispatch.claim_next_run(state.hub, machine, wait_seconds or 0, agent_gone)
        except DomainError as error:
            return RunPayload(run=None, errors=[MutationError.of(error)])
        return await RunPayload.of(info, (row, []))

    @strawberry.mutation(
        description="Machine agents on the channel: take the run it offered (agentChannel's"
        " RUN message) before starting its flow. Refused (LEASE_LOST, RUN_NOT_ACTIVE) once"
        " the offer was withdrawn or the run ended: then the flow must not start."
    )
    async def confirm_run(self, info: Info, id: strawberry.ID) -> RunPayload:
        now = info.context.app.services.clock.now()
        return await RunPayload.of(
            info,
            await attempt_as_agent(
                info, lambda s, machine_id: changes.confirm(s, machine_id, id, now)
            ),
        )

    @strawberry.mutation(description="Machine agents: report the end of the run they hold.")
    async def complete_run(
        self,
        info: Info,
        id: strawberry.ID,
        outcome: RunOutcome,
        output: JSON | None = None,
        message: str | None = None,
    ) -> RunPayload:
        now = info.context.app.services.clock.now()
        report: Any = output
        result = await attempt_as_agent(
            info,
            lambda s, machine_id: changes.complete(
                s,
                machine_id,
                id,
                succeeded=outcome is RunOutcome.SUCCEEDED,
                output=report,
                message=message,
                now=now,
            ),
        )
        if result[0] is not None:
            info.context.app.channels.reported(result[0].machine_id or "", id)
        return await RunPayload.of(info, result)
