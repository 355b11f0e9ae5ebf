"""Machines: `machines`, `machine`, the machine mutations and the agent's heartbeat."""

from __future__ import annotations

import strawberry

from app.db import models
from app.domain import machines, membership, passwords, sharing
from app.domain.environments import environment_id_of
from app.domain.errors import DomainError
from app.domain.pages import page_by_name
from app.domain.visibility import visible_machines_filter
from app.graphql.context import Info
from app.graphql.groups import AccessGrantPayload, DeletePayload
from app.graphql.mutation import attempt, check_first, shown
from app.graphql.paging import to_connection
from app.graphql.types.common import MutationError, ShareLevel
from app.graphql.types.machine import MachineConnection, MachineEdge, MachineType
from app.graphql.types.run import ConnectionType


@strawberry.input
class RegisterMachineInput:
    environment_id: strawberry.ID | None = None
    name: str
    description: str | None = None


@strawberry.input
class UpdateMachineInput:
    id: strawberry.ID
    name: str | None = None
    description: str | None = None


@strawberry.input
class AddMachineToGroupInput:
    machine_id: strawberry.ID
    group_id: strawberry.ID
    password: str


@strawberry.input
class ShareMachineInput:
    machine_id: strawberry.ID
    user_id: strawberry.ID
    access: ShareLevel


@strawberry.type
class MachinePayload:
    machine: MachineType | None
    errors: list[MutationError]

    @classmethod
    async def of(
        cls, info: Info, result: tuple[models.Machine | None, list[MutationError]]
    ) -> MachinePayload:
        """The payload of a machine mutation."""
        machine, errors = result
        return cls(machine=await _shown_machine(info, machine), errors=errors)


async def _shown_machine(info: Info, machine: models.Machine | None) -> MachineType | None:
    seen = await shown(info.context.sight.machines, machine)
    return MachineType.of(seen) if seen else None


@strawberry.type
class RegisterMachinePayload:
    machine: MachineType | None
    machine_key: str | None
    errors: list[MutationError]


@strawberry.type
class AddMachineToGroupPayload:
    machine: MachineType | None
    broken_connections: list[ConnectionType]
    errors: list[MutationError]


@strawberry.type
class HeartbeatPayload:
    machine: MachineType | None
    errors: list[MutationError]


@strawberry.type
class MachineQuery:
    @strawberry.field(description="The machines the viewer may see, by name.")
    async def machines(
        self,
        info: Info,
        environment_id: strawberry.ID | None = None,
        first: int | None = 50,
        after: str | None = None,
    ) -> MachineConnection:
        viewer = info.context.viewer
        async with info.context.db.read() as session:
            environment = await environment_id_of(
                session, environment_id, info.context.app.default_environment_id
            )
            visible = visible_machines_filter(viewer, environment)
            page = await page_by_name(session, models.Machine, visible, first, after)
        return to_connection(page, MachineType.of, MachineEdge, MachineConnection)

    @strawberry.field
    async def machine(self, info: Info, id: strawberry.ID) -> MachineType | None:
        info.context.viewer  # noqa: B018  (agents may not look machines up)
        machine = await info.context.loaders.seen_machines.load(id)
        return MachineType.of(machine) if machine else None


@strawberry.type
class MachineMutation:
    @strawberry.mutation(description="The machine key is returned once; agents use it as token.")
    async def register_machine(
        self, info: Info, input: RegisterMachineInput
    ) -> RegisterMachinePayload:
        result, errors = await attempt(
            info,
            lambda s, c: machines.register_machine(
                s,
                c,
                environment_id=input.environment_id,
                name=input.name,
                description=input.description,
            ),
        )
        machine, key = result if result else (None, None)
        return RegisterMachinePayload(
            machine=await _shown_machine(info, machine), machine_key=key, errors=errors
        )

    @strawberry.mutation
    async def update_machine(self, info: Info, input: UpdateMachineInput) -> MachinePayload:
        return await MachinePayload.of(
            info,
            await attempt(
                info,
                lambda s, c: machines.update_machine(
                    s, c, input.id, name=input.name, description=input.description
                ),
            ),
        )

    @strawberry.mutation
    async def delete_machine(self, info: Info, id: strawberry.ID) -> DeletePayload:
        return DeletePayload.of(await attempt(info, lambda s, c: machines.delete_machine(s, c, id)))

    @strawberry.mutation(description="The first machine added sets the group password.")
    async def add_machine_to_group(
        self, info: Info, input: AddMachineToGroupInput
    ) -> AddMachineToGroupPayload:
        # The password is proved between a read that checks and the write that keeps it,
        # so that no other write waits behind Argon2id, as for regenerated passwords.
        password_hash, errors = await check_first(
            info,
            lambda s, c: membership.password_to_check(s, c, input.machine_id, input.group_id),
        )
        result = None
        if not errors:
            proof = await passwords.prove(password_hash, input.password)
            result, errors = await attempt(
                info,
                lambda s, c: membership.add_machine_to_group(
                    s, c, input.machine_id, input.group_id, input.password, proof
                ),
            )
        machine, broken = result if result else (None, [])
        connections = await info.context.sight.connections(broken)
        return AddMachineToGroupPayload(
            machine=await _shown_machine(info, machine),
            broken_connections=[ConnectionType.of(seen) for seen in connections if seen],
            errors=errors,
        )

    @strawberry.mutation
    async def remove_machine_from_group(
        self, info: Info, machine_id: strawberry.ID
    ) -> MachinePayload:
        return await MachinePayload.of(
            info,
            await attempt(
                info, lambda s, c: membership.remove_machine_from_group(s, c, machine_id)
            ),
        )

    @strawberry.mutation
    async def share_machine(self, info: Info, input: ShareMachineInput) -> AccessGrantPayload:
        return AccessGrantPayload.of(
            await attempt(
                info,
                lambda s, c: sharing.share(
                    s, c, input.machine_id, input.user_id, input.access.access_level, machine=True
                ),
            )
        )

    @strawberry.mutation
    async def revoke_machine_access(
        self, info: Info, machine_id: strawberry.ID, user_id: strawberry.ID
    ) -> AccessGrantPayload:
        return AccessGrantPayload.of(
            await attempt(
                info, lambda s, c: sharing.revoke(s, c, machine_id, user_id, machine=True)
            )
        )

    @strawberry.mutation(description="Machine agents only: any agent call also counts.")
    async def heartbeat(self, info: Info) -> HeartbeatPayload:
        try:
            agent = info.context.agent
        except DomainError as error:
            return HeartbeatPayload(machine=None, errors=[MutationError.of(error)])
        machine = await info.context.loaders.seen_machines.load(agent.machine.id)
        return HeartbeatPayload(machine=MachineType.of(machine) if machine else None, errors=[])
